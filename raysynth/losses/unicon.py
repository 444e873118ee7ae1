"""UniCon (Uncertainty-Inclusive Contrastive learning) and supervised contrastive losses.

:func:`unicon_loss` is UniCon eq. 3. Anchors are the real samples S. For an anchor i:

* P(i): the other *real* samples of class y_i (SupCon-Real's positives, eq. 1);
* U(i): the *synthetic* samples generated for class y_i, weighted by ``w[y_i]``;
* A(i): every other sample of the batch, real and synthetic (the denominator).

    L_i = -1/|P(i)| Σ_{p∈P(i)} log( exp(v_i·v_p/τ) / Σ_{a∈A(i)} exp(v_i·v_a/τ) )
          - w_{y_i}/|U(i)| Σ_{u∈U(i)} log( exp(v_i·v_u/τ) / Σ_{a∈A(i)} exp(v_i·v_a/τ) )

An empty P(i) or U(i) drops its term; the loss is the mean of L_i over anchors with at
least one positive or synthetic partner (the paper sums over anchors; a mean keeps the
scale independent of the batch size). With w = 0 the second term vanishes and UniCon is
SupCon-Real's positive term with synthetic samples acting as negatives only.

:func:`supcon_loss` is SupCon (eq. 1, Khosla et al. 2020) over every row: SupCon-Real =
call it on the real rows only; SupCon-Mixed (eq. 2) = call it on all rows with the
synthetic samples labelled as their target class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from raysynth.losses.base import LossBatch, Objective, check_non_negative, check_positive, register_objective


def _log_prob(features: torch.Tensor, temperature: float) -> torch.Tensor:
    """log( exp(v_i·v_j/τ) / Σ_{a≠i} exp(v_i·v_a/τ) ) for every pair; the diagonal is unused."""
    sim = features @ features.T / temperature
    self_mask = torch.eye(len(features), dtype=torch.bool, device=features.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    return sim - torch.logsumexp(sim, dim=1, keepdim=True)


def _mean_over(log_prob: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row mean of log_prob over ``mask`` (0 where the row's mask is empty), and counts."""
    count = mask.sum(1)
    total = torch.where(mask, log_prob, torch.zeros_like(log_prob)).sum(1)
    return total / count.clamp(min=1), count


def unicon_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    is_synthetic: torch.Tensor,
    class_weights: torch.Tensor,
    temperature: float = 0.07,
) -> torch.Tensor:
    """UniCon eq. 3 on L2-normalised projections ``features`` (N×d).

    ``labels``: class of every row (a synthetic row's target class); ``is_synthetic``:
    bool (N,); ``class_weights``: (C,) weight of each class's synthetic samples.
    """
    labels = labels.view(-1)
    is_synthetic = is_synthetic.view(-1).bool()
    log_prob = _log_prob(features, temperature)
    same = labels[:, None] == labels[None, :]
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=features.device)
    real = ~is_synthetic
    positives = same & not_self & real[None, :]
    synthetic = same & is_synthetic[None, :]
    pos_term, n_pos = _mean_over(log_prob, positives)
    syn_term, n_syn = _mean_over(log_prob, synthetic)
    per_anchor = -pos_term - class_weights[labels] * syn_term
    valid = real & ((n_pos > 0) | (n_syn > 0))
    if not valid.any():
        return features.sum() * 0.0
    return per_anchor[valid].mean()


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """SupCon eq. 1: every row is an anchor; positives are the other rows of its class."""
    labels = labels.view(-1)
    log_prob = _log_prob(features, temperature)
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=features.device)
    positives = (labels[:, None] == labels[None, :]) & not_self
    term, count = _mean_over(log_prob, positives)
    valid = count > 0
    if not valid.any():
        return features.sum() * 0.0
    return -term[valid].mean()


def _rows(batch: LossBatch, with_synthetic: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not (with_synthetic and batch.has_synthetic):
        n = len(batch.y_real)
        return batch.proj_real, batch.y_real, torch.zeros(n, dtype=torch.bool, device=batch.y_real.device)
    features = torch.cat([batch.proj_real, batch.proj_syn])
    labels = torch.cat([batch.y_real, batch.syn_class])
    flags = torch.cat([torch.zeros_like(batch.y_real), torch.ones_like(batch.syn_class)]).bool()
    return features, labels, flags


@dataclass
class UniConParams:
    weight: float = field(default=1.0, metadata={"help": "Weight of the UniCon term in the total loss."})
    temperature: float = field(default=0.07, metadata={"help": "Contrastive temperature τ."})


@register_objective
class UniCon(Objective):
    name = "unicon"
    Params = UniConParams
    needs_projection = True
    representation = True

    @classmethod
    def check(cls, params: UniConParams, where: str) -> None:
        check_non_negative(params, where, "weight")
        check_positive(params, where, "temperature")

    def terms(self, batch: LossBatch) -> dict[str, torch.Tensor]:
        features, labels, flags = _rows(batch, with_synthetic=True)
        loss = unicon_loss(features, labels, flags, batch.class_weights, self.params.temperature)
        return {"contrastive": self.params.weight * loss}


@dataclass
class SupConParams:
    weight: float = field(default=1.0, metadata={"help": "Weight of the SupCon term in the total loss."})
    temperature: float = field(default=0.07, metadata={"help": "Contrastive temperature τ."})
    synthetic: str = field(
        default="real",
        metadata={"help": "'real': SupCon-Real (synthetic rows dropped); 'mixed': SupCon-Mixed (treated as real)."},
    )


@register_objective
class SupCon(Objective):
    name = "supcon"
    Params = SupConParams
    needs_projection = True
    representation = True

    @classmethod
    def check(cls, params: SupConParams, where: str) -> None:
        from raysynth.config import ConfigError

        check_non_negative(params, where, "weight")
        check_positive(params, where, "temperature")
        if params.synthetic not in ("real", "mixed"):
            raise ConfigError(f"{where}.synthetic: must be 'real' or 'mixed', got '{params.synthetic}'")

    def terms(self, batch: LossBatch) -> dict[str, torch.Tensor]:
        features, labels, _ = _rows(batch, with_synthetic=self.params.synthetic == "mixed")
        return {"contrastive": self.params.weight * supcon_loss(features, labels, self.params.temperature)}
