"""Fixed-prototype classifiers ("Neural Collapse by Design", 2026; abstract only public).

A :class:`PrototypeHead` classifies by cosine similarity to fixed class prototypes on
the unit hypersphere, scaled by 1/τ: ``logits = normalize(f) · normalize(P)ᵀ / τ``.
Prototypes are a simplex ETF (neural collapse by design) or the class means of the real
shots' features under the current encoder (the classifier SupCon implicitly optimises;
refreshed once per epoch, never trained).

Losses on those logits (raysynth's reading of the two named losses):

* NTCE — normalised, temperature-scaled cross-entropy: CE over cos(f, p_c)/τ, every
  other prototype a negative (the "large effective negative set").
* NONL — the same with alignment and uniformity decoupled: the positive is removed from
  the denominator, ``−cos(f,p_y)/τ + log Σ_{c≠y} exp(cos(f,p_c)/τ)`` (as decoupled
  contrastive learning does for InfoNCE). Soft labels average the per-class losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from raysynth.config import field_
from raysynth.losses.base import LossBatch, Objective, register_objective
from raysynth.losses.sync import simplex_etf

PROTOTYPE_KINDS = ("etf", "class_means")
VARIANTS = ("ntce", "nonl")


def class_mean_prototypes(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Normalised mean of each class's normalised features (C×d); a class without
    samples keeps a zero row (it is never predicted)."""
    f = F.normalize(features.detach(), dim=-1)
    sums = torch.zeros(num_classes, f.shape[1], dtype=f.dtype, device=f.device).index_add_(0, labels, f)
    return F.normalize(sums, dim=-1)


class PrototypeHead(nn.Module):
    """cos(f, p_c)/τ against fixed prototypes (a buffer: saved, never trained)."""

    def __init__(self, num_classes: int, dim: int, kind: str = "etf", temperature: float = 0.1, seed: int = 0):
        super().__init__()
        if kind not in PROTOTYPE_KINDS:
            raise ValueError(f"prototype kind must be one of {PROTOTYPE_KINDS}, got {kind!r}")
        self.kind = kind
        self.temperature = temperature
        init = simplex_etf(num_classes, dim, seed) if kind == "etf" else torch.zeros(num_classes, dim)
        self.register_buffer("prototypes", init)

    @torch.no_grad()
    def set_class_means(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        self.prototypes.copy_(class_mean_prototypes(features, labels, len(self.prototypes)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=-1) @ F.normalize(self.prototypes, dim=-1).T / self.temperature


def _targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return labels if labels.dim() == 2 else F.one_hot(labels.long(), num_classes).to(torch.float32)


def ntce_loss(logits: torch.Tensor, labels: torch.Tensor, sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy on prototype logits (cos/τ); hard (N,) or soft (N×C) labels."""
    per = -(_targets(labels, logits.shape[1]) * F.log_softmax(logits, dim=-1)).sum(-1)
    if sample_weights is not None:
        per = per * sample_weights
    return per.sum() / max(len(per), 1)


def nonl_loss(logits: torch.Tensor, labels: torch.Tensor, sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Decoupled form: −s_y + log Σ_{c≠y} exp(s_c), with s = cos/τ."""
    c = logits.shape[1]
    others = logits[:, None, :].expand(-1, c, -1).masked_fill(torch.eye(c, dtype=torch.bool, device=logits.device), float("-inf"))
    per_class = -logits + torch.logsumexp(others, dim=-1)  # N×C: the loss if class c were the label
    per = (_targets(labels, c) * per_class).sum(-1)
    if sample_weights is not None:
        per = per * sample_weights
    return per.sum() / max(len(per), 1)


@dataclass
class PrototypeParams:
    prototypes: str = field_("'etf' (fixed simplex ETF) or 'class_means'.", "etf", choices=PROTOTYPE_KINDS)
    variant: str = field_("'ntce' or 'nonl' (decoupled).", "ntce", choices=VARIANTS)
    temperature: float = field_("τ of the cosine logits.", 0.1, gt=0.0)
    real: float = field_("Weight of the loss on real images.", 1.0, ge=0.0)
    synthetic: float = field_("Weight of the class-weighted loss on synthetic images.", 1.0, ge=0.0)


@register_objective
class PrototypeLoss(Objective):
    """Classifies with a :class:`PrototypeHead`; replaces ``ce`` (use one or the other)."""

    name = "prototype"
    Params = PrototypeParams
    head = "prototype"


    def terms(self, batch: LossBatch) -> dict[str, torch.Tensor]:
        fn = ntce_loss if self.params.variant == "ntce" else nonl_loss
        out = {"proto_real": self.params.real * fn(batch.logits_real, batch.y_real)}
        if batch.has_synthetic and self.params.synthetic > 0:
            weights = batch.class_weights[batch.syn_class]
            out["proto_syn"] = self.params.synthetic * fn(batch.logits_syn, batch.soft_syn, weights)
        return out
