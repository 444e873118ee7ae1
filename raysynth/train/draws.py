"""Which images each training step draws: passes over the data, as the papers' loaders.

The k-th real (or synthetic) image a run draws is element ``k mod N`` of the pass
``k // N``: a permutation of the N images seeded by the run's seed, the kind and the
pass. So every image is drawn once per pass (an epoch of ``N / batch`` steps is exactly
one pass, as a shuffled PyTorch ``DataLoader`` gives), and the batch of a step is a pure
function of (seed, step): a run resumed from an epoch checkpoint draws what an
uninterrupted one would have.
"""

from __future__ import annotations

import torch

_KINDS = {"real": 0, "syn": 1}


class EpochDraws:
    """``draws.take(step, batch)``: the indices of one step's ``batch`` images of a kind."""

    def __init__(self, n: int, seed: int, kind: str):
        if n <= 0:
            raise ValueError(f"no {kind} images to draw from")
        self.n, self.seed, self.kind = n, seed, kind
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, k: int) -> torch.Tensor:
        if k not in self._perms:
            if len(self._perms) > 2:  # passes are walked in order: keep the last few
                self._perms.pop(min(self._perms))
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + _KINDS[self.kind] * 7919 + k)
            self._perms[k] = torch.randperm(self.n, generator=g)
        return self._perms[k]

    def take(self, step: int, batch: int) -> torch.Tensor:
        start = step * batch
        positions = torch.arange(start, start + batch)
        passes = positions // self.n
        out = torch.empty(batch, dtype=torch.long)
        for k in passes.unique().tolist():
            at = passes == k
            out[at] = self._perm(k)[positions[at] % self.n]
        return out


def steps_per_pass(n: int, batch: int) -> int:
    """Steps of one pass over ``n`` images drawn ``batch`` at a time (the last one partial)."""
    return -(-n // max(batch, 1))
