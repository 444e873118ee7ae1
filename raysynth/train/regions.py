"""Batches whose real and synthetic images meet in the same regions.

The bound loss's discrepancy and robustness terms (and SyNC's regional term) only see
regions that hold real *and* synthetic samples of the same batch. Drawn uniformly, a
batch of 32 real + 32 synthetic images over K = 400 regions (CUB: 200 classes x 2)
shares about two regions, and the robustness term needs two synthetic images in one of
them: it is zero in most steps, so searching λ1/λ2 searches nothing.

:class:`RegionSampler` draws each step from ``partition.batch_regions`` regions that
hold both kinds: a region is picked, then real and synthetic images from it.
``benchmarks/bound_coverage.py`` prints how often each term is non-zero either way.
"""

from __future__ import annotations

import torch


class RegionSampler:
    """Indices of a batch drawn from ``regions`` regions holding real and synthetic images
    (regions drawn with replacement; images within a region with replacement)."""

    def __init__(self, real_part: torch.Tensor, syn_part: torch.Tensor, regions: int):
        k = int(max(real_part.max(), syn_part.max())) + 1
        self.real = _members(real_part, k)
        self.syn = _members(syn_part, k)
        both = [i for i in range(k) if len(self.real[i]) and len(self.syn[i])]
        if not both:
            raise ValueError("no region holds both real and synthetic images")
        self.shared = torch.tensor(both)
        self.regions = regions

    def draw(self, n_real: int, n_syn: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        r = max(1, min(self.regions, n_real, n_syn))
        chosen = self.shared[torch.randint(len(self.shared), (r,), generator=g)].tolist()
        return _spread(self.real, chosen, n_real, g), _spread(self.syn, chosen, n_syn, g)


def _members(part: torch.Tensor, k: int) -> list[torch.Tensor]:
    order = torch.argsort(part, stable=True)
    counts = torch.bincount(part.long(), minlength=k).tolist()
    return list(torch.split(order, counts))


def _spread(members: list[torch.Tensor], chosen: list[int], n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` indices split as evenly as possible over the chosen regions."""
    out = []
    for j, region in enumerate(chosen):
        count = n // len(chosen) + (j < n % len(chosen))
        pool = members[region]
        out.append(pool[torch.randint(len(pool), (count,), generator=g)])
    return torch.cat(out)


def region_sampler(data, objectives, partition) -> RegionSampler | None:
    """The sampler of a training run: static partitions, synthetic images, an objective
    that needs regions and ``partition.batch_regions`` > 0; else None (uniform draws)."""
    if partition is None or partition.batch_regions <= 0 or data.real_part is None or data.syn_part is None:
        return None
    if not data.has_synthetic or not any(o.needs_partitions for o in objectives):
        return None
    try:
        return RegionSampler(data.real_part, data.syn_part, partition.batch_regions)
    except ValueError:
        return None  # no region meets: uniform draws (the terms are zero either way)
