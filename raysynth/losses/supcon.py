"""SupCon (eq. 1, Khosla et al. 2020) over every row of a batch.

SupCon-Real = call it on the real rows only; SupCon-Mixed (UniCon eq. 2) = call it on all
rows with the synthetic samples labelled as their target class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raysynth.config import field_
from raysynth.losses.base import LossBatch, Objective, register_objective
from raysynth.losses.contrastive import contrastive_rows, log_prob_matrix, mean_over


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """SupCon eq. 1: every row is an anchor; positives are the other rows of its class."""
    labels = labels.view(-1)
    log_prob = log_prob_matrix(features, temperature)
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=features.device)
    positives = (labels[:, None] == labels[None, :]) & not_self
    term, count = mean_over(log_prob, positives)
    valid = count > 0
    if not valid.any():
        return features.sum() * 0.0
    return -term[valid].mean()


@dataclass
class SupConParams:
    weight: float = field_("Weight of the SupCon term in the total loss.", 1.0, ge=0.0)
    temperature: float = field_("Contrastive temperature τ.", 0.07, gt=0.0)
    synthetic: str = field_(
        "'real': SupCon-Real (synthetic rows dropped); 'mixed': SupCon-Mixed (treated as real).",
        "real", choices=("real", "mixed"))


@register_objective
class SupCon(Objective):
    name = "supcon"
    Params = SupConParams
    needs_projection = True
    representation = True


    def uses_synthetic(self, class_weights: torch.Tensor) -> bool:
        return self.params.synthetic == "mixed"  # SupCon does not weight classes

    def terms(self, batch: LossBatch) -> dict[str, torch.Tensor]:
        features, labels, _ = contrastive_rows(batch, with_synthetic=self.params.synthetic == "mixed")
        return {"contrastive": self.params.weight * supcon_loss(features, labels, self.params.temperature)}
