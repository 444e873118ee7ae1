"""UniCon (Uncertainty-Inclusive Contrastive learning).

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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raysynth.config import field_
from raysynth.losses.base import LossBatch, Objective, register_objective
from raysynth.losses.contrastive import contrastive_rows, log_prob_matrix, mean_over


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
    log_prob = log_prob_matrix(features, temperature)
    same = labels[:, None] == labels[None, :]
    not_self = ~torch.eye(len(labels), dtype=torch.bool, device=features.device)
    real = ~is_synthetic
    positives = same & not_self & real[None, :]
    synthetic = same & is_synthetic[None, :]
    pos_term, n_pos = mean_over(log_prob, positives)
    syn_term, n_syn = mean_over(log_prob, synthetic)
    per_anchor = -pos_term - class_weights[labels] * syn_term
    valid = real & ((n_pos > 0) | (n_syn > 0))
    if not valid.any():
        return features.sum() * 0.0
    return per_anchor[valid].mean()


@dataclass
class UniConParams:
    weight: float = field_("Weight of the UniCon term in the total loss.", 1.0, ge=0.0)
    temperature: float = field_("Contrastive temperature τ.", 0.07, gt=0.0)


@register_objective
class UniCon(Objective):
    name = "unicon"
    Params = UniConParams
    needs_projection = True
    representation = True


    def uses_synthetic(self, class_weights: torch.Tensor) -> bool:
        return True  # a class at w_c = 0 still gives its synthetic rows as negatives

    def terms(self, batch: LossBatch) -> dict[str, torch.Tensor]:
        features, labels, flags = contrastive_rows(batch, with_synthetic=True)
        loss = unicon_loss(features, labels, flags, batch.class_weights, self.params.temperature)
        return {"contrastive": self.params.weight * loss}
