"""The bound loss's regularisers over all data: the lightweight variant (ICML 2025,
Appendix C: "we compute regularization terms in all data instead of each batch ...
the number of generated data is much smaller, so this computation ensures that the
regularization is big enough to be meaningful").

:class:`OutputMemory` keeps the most recent model output and region of every real shot
and every synthetic image. Each step, :func:`all_data_terms` computes the discrepancy
and robustness terms of eq. 7 over every sample seen so far: the batch's rows enter with
their live outputs (the gradient flows through them), every other row with its stored
output (a constant). A sample is left out until a batch has first drawn it.

Pairs are only ever formed inside a region, so the cost is K x (largest region)^2, not
(all samples)^2: regions are laid out as a padded (K x width) table of row indices.
"""

from __future__ import annotations

from typing import Callable

import torch

UNSEEN = -1  # region of a sample no batch has drawn yet
NORMALISATIONS = ("pool", "batch")  # g of the bound loss's regularisers (raysynth.losses.bound)


def normaliser(batch_g: torch.Tensor, normalise: str, pool_images: float) -> torch.Tensor | float:
    """g of eq. 7's regularisers: the counted synthetic rows ('batch', the paper) or the
    pool's size, a constant ('pool', the official code)."""
    if normalise == "batch":
        return batch_g
    if normalise != "pool":
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    if pool_images <= 0:
        raise ValueError("normalise='pool' needs the pool's size (pool_images > 0)")
    return float(pool_images)


class OutputMemory:
    """Latest output (logits) and region of every real and synthetic sample."""

    def __init__(self, n_real: int, n_syn: int, num_classes: int, device: torch.device | str = "cpu",
                 syn_class: torch.Tensor | None = None):
        self.syn_class = syn_class.to(device) if syn_class is not None else None  # for per-class weights
        self.out = {
            "real": torch.zeros(n_real, num_classes, device=device),
            "syn": torch.zeros(n_syn, num_classes, device=device),
        }
        self.part = {
            "real": torch.full((n_real,), UNSEEN, dtype=torch.long, device=device),
            "syn": torch.full((n_syn,), UNSEEN, dtype=torch.long, device=device),
        }

    def with_batch(self, kind: str, index: torch.Tensor, live: torch.Tensor, part: torch.Tensor):
        """(outputs, regions) of every ``kind`` sample, the batch's rows replaced by their
        live outputs and regions (a sample drawn twice enters once, its first row)."""
        index, first = _first_occurrences(index.to(self.out[kind].device))
        out = self.out[kind].to(live.dtype).index_put((index,), live[first])
        regions = self.part[kind].index_put((index,), part[first].to(self.part[kind].device))
        return out, regions

    def store(self, kind: str, index: torch.Tensor, live: torch.Tensor, part: torch.Tensor) -> None:
        index, first = _first_occurrences(index.to(self.out[kind].device))
        self.out[kind][index] = live[first].detach().to(self.out[kind].dtype)
        self.part[kind][index] = part[first].to(self.part[kind].device)

    def seen(self, kind: str) -> int:
        return int((self.part[kind] != UNSEEN).sum())

    def state_dict(self) -> dict:
        return {"out": {k: v.cpu().clone() for k, v in self.out.items()}, "part": {k: v.cpu().clone() for k, v in self.part.items()}}

    def load_state_dict(self, state: dict) -> None:
        for kind in ("real", "syn"):
            self.out[kind] = state["out"][kind].to(self.out[kind].device)
            self.part[kind] = state["part"][kind].to(self.part[kind].device)


def _first_occurrences(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unique sample ids, the batch row where each first appears)."""
    unique, inverse = torch.unique(index, return_inverse=True)
    rows = torch.arange(len(index), device=index.device)
    first = torch.full((len(unique),), len(index), dtype=torch.long, device=index.device).scatter_reduce(
        0, inverse, rows, reduce="amin"
    )
    return unique, first


def region_table(part: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(K x width) table of the row ids in each region, padded with -1, and the counts.
    Rows of region ``UNSEEN`` are left out."""
    rows = torch.nonzero(part >= 0).flatten()
    regions = part[rows]
    order = torch.argsort(regions, stable=True)
    rows, regions = rows[order], regions[order]
    counts = torch.bincount(regions, minlength=k)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(rows), device=part.device) - starts[regions]
    table = torch.full((k, max(int(counts.max()) if len(rows) else 0, 1)), -1, dtype=torch.long, device=part.device)
    table[regions, slot] = rows
    return table, counts


def block_distances(a: torch.Tensor, b: torch.Tensor, distance: str) -> torch.Tensor:
    """(R x n x m) distances between the rows of a (R x n x C) and b (R x m x C) per
    region: ℓ2 norm or mean squared difference, through one batched matmul."""
    sq = (a * a).sum(-1)[:, :, None] + (b * b).sum(-1)[:, None, :] - 2.0 * a @ b.transpose(1, 2)
    sq = sq.clamp_min(0.0)
    if distance == "mse":
        return sq / a.shape[-1]
    eps = 1e-10  # identical rows give 0 with a zero gradient (sqrt'(0) is infinite)
    return torch.where(sq > eps, sq.clamp_min(eps).sqrt(), torch.zeros_like(sq))


def all_data_terms(
    memory: OutputMemory,
    real: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    syn: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    h: Callable[[torch.Tensor], torch.Tensor] = lambda out: out.softmax(dim=-1),
    distance: str = "l2",
    normalise: str = "batch",
    pool_images: float = 0.0,
    syn_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(discrepancy, robustness) of eq. 7 over every sample seen, the batch's rows live.

    ``real`` and ``syn`` are (sample ids, logits, regions) of the batch's rows; ``h`` maps
    logits to the compared outputs (the bound loss's softmax or identity). Same
    normalisation as :func:`raysynth.losses.bound.discrepancy_term` and
    :func:`~raysynth.losses.bound.robustness_term`, with S_i, G_i, g_i and g counted over
    all data instead of the batch; ``normalise``, ``pool_images`` and ``syn_weights`` (here
    one weight per synthetic sample of the pool) as there.
    """
    out_real, part_real = memory.with_batch("real", *real)
    out_syn, part_syn = memory.with_batch("syn", *syn)
    zero = (real[1].sum() + syn[1].sum()) * 0.0
    k = int(max(part_real.max(), part_syn.max())) + 1
    if k <= 0:
        return zero, zero
    real_table, n_i = region_table(part_real, k)
    syn_table, _ = region_table(part_syn, k)
    w = (syn_table >= 0).to(out_syn.dtype)  # a synthetic row's weight: 0 for padding
    if syn_weights is not None:
        w = w * syn_weights.to(out_syn.dtype)[syn_table.clamp_min(0)]
    g_i = w.sum(1)  # weighted counts: a row at weight 0 is as if absent
    in_t = (n_i > 0) & (g_i > 0)
    if not in_t.any():
        return zero, zero
    real_table, syn_table, n_i, g_i, w = real_table[in_t], syn_table[in_t], n_i[in_t].float(), g_i[in_t], w[in_t]
    h_real = h(out_real)[real_table.clamp_min(0)]  # (|T| x width x C)
    h_syn = h(out_syn)[syn_table.clamp_min(0)]
    real_ok = real_table >= 0
    g = normaliser(g_i.sum(), normalise, pool_images)
    cross = block_distances(h_real, h_syn, distance) * real_ok[:, :, None] * w[:, None, :]
    discrepancy = (cross.sum((1, 2)) / n_i).sum() / g  # Σ_i 1/(|S_i|·g) Σ over S_i x G_i
    not_self = ~torch.eye(syn_table.shape[1], dtype=torch.bool, device=syn_table.device)  # u1 = u2 adds 0
    within = block_distances(h_syn, h_syn, distance) * w[:, :, None] * w[:, None, :] * not_self
    pairs = within.sum((1, 2)) / (2 if normalise == "pool" else 1)  # unordered pairs for 'pool'
    robustness = (pairs / g_i).sum() / g
    return discrepancy, robustness
