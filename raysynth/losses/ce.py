"""Cross-entropy on real images plus per-class-weighted soft cross-entropy on synthetic ones.

Each synthetic sample's loss is multiplied by the weight w_c of the class it was
generated for (UniCon's per-class trust in the generator). The sum is divided by the
number of synthetic samples, not by the sum of weights, so w_c = 0 removes a class's
synthetic images from the objective instead of re-scaling the others.

As an objective (``loss: {ce: {real: 0.8, synthetic: 0.2}}``) this is DataDream's
0.8·CE_real + 0.2·CE_syn recipe; its weights are search dimensions like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from raysynth.config import field_
from raysynth.losses.base import LossBatch, Objective, register_objective


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy against a probability vector (N,)."""
    return -(soft_targets * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def smooth_labels(soft_targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Label smoothing of probability vectors: (1 − ε)·y + ε/C (Diff-Mix trains with ε = 0.1)."""
    return soft_targets if epsilon == 0 else soft_targets * (1.0 - epsilon) + epsilon / soft_targets.shape[-1]


def weighted_synthetic_ce(
    logits: torch.Tensor,
    soft_targets: torch.Tensor,
    target_class: torch.Tensor,
    class_weights: torch.Tensor,
) -> torch.Tensor:
    per_sample = soft_cross_entropy(logits, soft_targets) * class_weights[target_class]
    return per_sample.sum() / max(len(per_sample), 1)


@dataclass
class CEParams:
    real: float = field_("Weight of the cross-entropy on real images.", 1.0, ge=0.0)
    synthetic: float = field_("Weight of the class-weighted soft cross-entropy on synthetic images.", 1.0, ge=0.0)
    label_smoothing: float = field_("ε of both cross-entropies: targets (1 − ε)·y + ε/C (Diff-Mix: 0.1).", 0.0, ge=0.0, lt=1.0)
    balance: bool = field_(
        "Logit adjustment for the class prior the per-class weights make (Menon et al. 2021): a class whose "
        "synthetic data is down-weighted is not predicted less for it.", False)


def training_prior(class_weights: torch.Tensor, real: float, synthetic: float) -> torch.Tensor:
    """The share of each class in a step's loss mass. Each cross-entropy is a mean over its
    rows, so the batch sizes cancel: the real term gives every class ``real``/C (rows
    spread evenly over the classes), the synthetic term ``synthetic``·w_c/C."""
    mass = real + synthetic * class_weights
    return mass / mass.sum()


@register_objective
class CrossEntropy(Objective):
    name = "ce"
    Params = CEParams
    mixes_labels = True


    def terms(self, batch: LossBatch) -> dict[str, torch.Tensor]:
        p, eps = self.params, self.params.label_smoothing
        logits_real, logits_syn = batch.logits_real, batch.logits_syn
        if p.balance and batch.has_synthetic:
            # train on logits + log(prior): the raw logits then score a balanced prior
            prior = training_prior(batch.class_weights, p.real, p.synthetic)
            shift = torch.log(prior.clamp_min(1e-12))
            logits_real, logits_syn = logits_real + shift, logits_syn + shift
        out = {"ce_real": p.real * F.cross_entropy(logits_real, batch.real_targets, label_smoothing=eps)}
        if batch.has_synthetic and p.synthetic > 0:
            out["ce_syn"] = p.synthetic * weighted_synthetic_ce(
                logits_syn, smooth_labels(batch.soft_syn, eps), batch.syn_class, batch.class_weights
            )
        return out
