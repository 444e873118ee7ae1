"""The generalization-bound loss of "Provably Improving Generalization of Few-Shot Models
with Synthetic Data" (ICML 2025), eq. 7:

    L = λ·F(S, h) + F(G, h)
        + λ1 · Σ_{i∈T} (g_i/g) · 1/(|S_i||G_i|) Σ_{s∈S_i, u∈G_i} ‖h(s) − h(u)‖      (discrepancy)
        + λ2 · (1/g) Σ_{i∈T} (1/g_i) Σ_{u1,u2∈G_i} ‖h(u1) − h(u2)‖                  (robustness)

S_i / G_i are the real / synthetic samples of the batch in partition (k-means region) i,
T is the set of partitions holding both real and synthetic samples, g_i = |G_i| and
g = Σ_{i∈T} g_i. The robustness pairs are ordered and include u1 = u2 (the paper's
double sum; those pairs add 0). h is the softmax output and ‖·‖ the ℓ2 norm (paper
form, the default); ``output="logits", distance="mse"`` gives the official code's
variant (mean squared difference of logits). F is cross-entropy; on synthetic samples
it accepts hard or soft (Diff-Mix) labels and optional per-sample weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from raysynth.config import field_
from raysynth.losses.base import LossBatch, Objective, register_objective
from raysynth.losses.ce import smooth_labels
from raysynth.losses.memory import NORMALISATIONS, all_data_terms, normaliser

OUTPUTS = ("softmax", "logits")
DISTANCES = ("l2", "mse")


def _h(out: torch.Tensor, output: str) -> torch.Tensor:
    if output == "softmax":
        return out.softmax(dim=-1)
    if output == "logits":
        return out
    raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


def pairwise_distance(a: torch.Tensor, b: torch.Tensor, distance: str = "l2") -> torch.Tensor:
    """(len(a), len(b)) matrix of ‖a_i − b_j‖ ('l2') or mean((a_i − b_j)²) ('mse').

    The ℓ2 norm is computed so that identical rows give exactly 0 with a zero gradient
    (``torch.cdist`` and a plain sqrt give NaN gradients there, and the robustness sum
    always contains u1 = u2).
    """
    diff = a[:, None, :] - b[None, :, :]
    sq = (diff * diff).sum(-1)
    if distance == "mse":
        return sq / a.shape[-1]
    if distance != "l2":
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    positive = sq > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))), torch.zeros_like(sq))


def _one_hot(part: torch.Tensor, k: int) -> torch.Tensor:
    return F.one_hot(part.long(), k).to(torch.float32)


def _regions(part_real: torch.Tensor, part_syn: torch.Tensor, syn_weights: torch.Tensor | None = None):
    """One-hot region membership of the real (r) and synthetic (s) rows, their counts per
    region, and which regions hold both (T). ``syn_weights`` scale each synthetic row's
    membership (UniCon's w_c): a row at weight 0 counts as absent."""
    k = int(max(part_real.max().item() if len(part_real) else 0, part_syn.max().item() if len(part_syn) else 0)) + 1
    r, s = _one_hot(part_real, k), _one_hot(part_syn, k)
    if syn_weights is not None:
        s = s * syn_weights.to(s.dtype)[:, None]
    n_i, g_i = r.sum(0), s.sum(0)
    in_t = (n_i > 0) & (g_i > 0)
    return r, s, n_i, g_i, in_t


def discrepancy_term(
    h_real: torch.Tensor,
    part_real: torch.Tensor,
    h_syn: torch.Tensor,
    part_syn: torch.Tensor,
    distance: str = "l2",
    normalise: str = "batch",
    pool_images: float = 0.0,
    syn_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Σ_{i∈T} 1/(|S_i|·g) Σ_{s∈S_i, u∈G_i} w_u·d(h(s), h(u)); 0 when T is empty.

    ``normalise="batch"`` (the paper's eq. 7): g = Σ_{i∈T} g_i, the batch's synthetic
    rows in shared regions, i.e. Σ_i (g_i/g)·mean over S_i × G_i. ``"pool"`` (the official
    code): g = ``pool_images``, the whole synthetic pool, a constant. ``syn_weights``: w_u,
    the class weight of each synthetic row (1 when None), also in the counts g_i: a row at
    w = 0 is as if absent, so a class the search trusts at 0 pulls nothing toward its
    synthetic images.
    ``h_real``/``h_syn`` are model outputs already mapped by h (softmax or logits).
    """
    if len(h_real) == 0 or len(h_syn) == 0:
        return (h_real.sum() + h_syn.sum()) * 0.0
    r, s, n_i, g_i, in_t = _regions(part_real, part_syn, syn_weights)
    if not in_t.any():
        return (h_real.sum() + h_syn.sum()) * 0.0
    d = pairwise_distance(h_real, h_syn, distance).to(torch.float32)
    pair_sum = ((r.T @ d) * s.T).sum(1)  # Σ_{s∈S_i, u∈G_i} w_u·d, per partition i
    g = normaliser(g_i[in_t].sum(), normalise, pool_images)
    return (pair_sum[in_t] / n_i[in_t]).sum() / g


def robustness_term(
    h_syn: torch.Tensor,
    part_syn: torch.Tensor,
    part_real: torch.Tensor,
    distance: str = "l2",
    normalise: str = "batch",
    pool_images: float = 0.0,
    syn_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """(1/g) Σ_{i∈T} (1/g_i) Σ_{u1,u2∈G_i} w_u1·w_u2·d(h(u1), h(u2)); T needs real samples,
    hence ``part_real``. ``"batch"`` (the paper): ordered pairs, u1 = u2 included (they add
    0), g the batch's count; ``"pool"`` (the official code): unordered pairs u1 < u2, g =
    ``pool_images``."""
    if len(h_syn) == 0 or len(part_real) == 0:
        return h_syn.sum() * 0.0
    _, s, _, g_i, in_t = _regions(part_real, part_syn, syn_weights)
    if not in_t.any():
        return h_syn.sum() * 0.0
    d = pairwise_distance(h_syn, h_syn, distance).to(torch.float32)
    pair_sum = ((s.T @ d) * s.T).sum(1)  # Σ_{u1,u2∈G_i} w_u1·w_u2·d (ordered), per partition i
    if normalise == "pool":
        pair_sum = pair_sum / 2  # d is symmetric with a zero diagonal: the unordered pairs
    g = normaliser(g_i[in_t].sum(), normalise, pool_images)
    return (pair_sum[in_t] / g_i[in_t]).sum() / g


def synthetic_ce(
    out_syn: torch.Tensor, y_syn: torch.Tensor, sample_weights: torch.Tensor | None = None, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy on synthetic samples; ``y_syn`` hard (N,) or soft (N×C)."""
    if y_syn.dim() == 2:
        per = -(smooth_labels(y_syn, label_smoothing) * F.log_softmax(out_syn, dim=-1)).sum(-1)
    else:
        per = F.cross_entropy(out_syn, y_syn, reduction="none", label_smoothing=label_smoothing)
    if sample_weights is not None:
        per = per * sample_weights
    return per.sum() / max(len(per), 1)


def bound_loss(
    out_real: torch.Tensor,
    y_real: torch.Tensor,
    part_real: torch.Tensor,
    out_syn: torch.Tensor,
    y_syn: torch.Tensor,
    part_syn: torch.Tensor,
    lam: float = 4.0,
    lam1: float = 0.1,
    lam2: float = 1.0,
    output: str = "softmax",
    distance: str = "l2",
    sample_weights: torch.Tensor | None = None,
    return_terms: bool = False,
    label_smoothing: float = 0.0,
    normalise: str = "batch",
    pool_images: float = 0.0,
):
    """Eq. 7. ``out_*`` are logits; ``y_real`` class indices or (N, C) probabilities
    (CutMix/Mixup); ``sample_weights`` (optional, per synthetic sample: raysynth passes
    UniCon's per-class weights) scale the synthetic cross-entropy and each synthetic
    point's pairs in both regularisers. ``normalise``/``pool_images``: see
    :func:`discrepancy_term`.

    Returns the total, or ``(total, terms)`` with the unweighted ``ce_real``, ``ce_syn``,
    ``discrepancy`` and ``robustness`` when ``return_terms``.
    """
    ce_real = F.cross_entropy(out_real, y_real, label_smoothing=label_smoothing)
    ce_syn = synthetic_ce(out_syn, y_syn, sample_weights, label_smoothing) if len(out_syn) else out_real.sum() * 0.0
    h_real, h_syn = _h(out_real, output), _h(out_syn, output)
    disc = discrepancy_term(h_real, part_real, h_syn, part_syn, distance, normalise, pool_images, sample_weights)
    rob = robustness_term(h_syn, part_syn, part_real, distance, normalise, pool_images, sample_weights)
    total = lam * ce_real + ce_syn + lam1 * disc + lam2 * rob
    if return_terms:
        return total, {"ce_real": ce_real, "ce_syn": ce_syn, "discrepancy": disc, "robustness": rob}
    return total


@dataclass
class BoundParams:
    lam: float = field_("λ: weight of the real cross-entropy (paper: 4; 1 for Cars).", 4.0, ge=0.0)
    lam1: float = field_("λ1: weight of the discrepancy term.", 0.1, ge=0.0)
    lam2: float = field_("λ2: weight of the robustness term (ignored if lam2_ratio is set).", 1.0, ge=0.0)
    lam2_ratio: float | None = field_("Tie λ2 = lam2_ratio · λ1 (the paper keeps 10); empty = use lam2.", None, ge=0.0)
    output: str = field_("h: 'softmax' (paper) or 'logits' (official code).", "softmax", choices=OUTPUTS)
    distance: str = field_("'l2' norm (paper) or 'mse' (official code).", "l2", choices=DISTANCES)
    label_smoothing: float = field_("ε of both cross-entropies: targets (1 − ε)·y + ε/C (Diff-Mix: 0.1).", 0.0, ge=0.0, lt=1.0)
    normalise: str = field_(
        "g of both regularisers: 'pool' (the official code: the synthetic pool's size, a constant; robustness over "
        "unordered pairs) or 'batch' (the paper's eq. 7: the batch's synthetic rows in shared regions; ordered "
        "pairs). The λ grids of the papers' settings are tuned on 'pool'.", "pool", choices=NORMALISATIONS)

    @property
    def effective_lam2(self) -> float:
        return self.lam2 if self.lam2_ratio is None else self.lam2_ratio * self.lam1


@register_objective
class BoundLoss(Objective):
    name = "bound"
    Params = BoundParams
    needs_partitions = True
    uses_output_memory = True
    mixes_labels = True


    def terms(self, batch: LossBatch) -> dict[str, torch.Tensor]:
        p = self.params
        if not batch.has_synthetic:
            return {"ce_real": p.lam * F.cross_entropy(batch.logits_real, batch.real_targets, label_smoothing=p.label_smoothing)}
        _, terms = bound_loss(
            batch.logits_real, batch.real_targets, batch.part_real,
            batch.logits_syn, batch.soft_syn, batch.part_syn,
            output=p.output, distance=p.distance,
            sample_weights=batch.class_weights[batch.syn_class],
            return_terms=True, label_smoothing=p.label_smoothing,
            normalise=p.normalise, pool_images=batch.pool_images,
        )  # fmt: skip
        if batch.memory is not None:  # the lightweight variant: regularisers over all data
            terms["discrepancy"], terms["robustness"] = all_data_terms(
                batch.memory, (batch.real_index, batch.logits_real, batch.part_real),
                (batch.syn_index, batch.logits_syn, batch.part_syn), lambda out: _h(out, p.output), p.distance,
                p.normalise, batch.pool_images,
                None if batch.memory.syn_class is None else batch.class_weights[batch.memory.syn_class],
            )  # fmt: skip
        return {
            "ce_real": p.lam * terms["ce_real"],
            "ce_syn": terms["ce_syn"],
            "discrepancy": p.lam1 * terms["discrepancy"],
            "robustness": p.effective_lam2 * terms["robustness"],
        }
