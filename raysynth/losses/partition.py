"""Partitions of real + synthetic data into local regions (ICML 2025, Section 4.1.1).

:func:`kmeans_partition` is the full method's k-means (FAISS, 300 iterations by default,
a GPU index when FAISS sees a GPU). :class:`OnlineKMeans` is the lightweight variant's
mini-batch k-means (Algorithm 2, lines 11-13): each batch's points are assigned to the
nearest centre, and centre i moves with learning rate η = 1/count_i, i.e. every centre
is the running mean of the points ever assigned to it (Sculley 2010).
"""

from __future__ import annotations

import numpy as np
import torch


def _as_float32(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    return np.ascontiguousarray(x)


def check_faiss() -> None:
    """FAISS comes from one of two extras (``raysynth[cpu]`` / ``raysynth[gpu]``: both
    builds provide the module ``faiss``); a search that needs static partitions without
    it exits 2 before anything starts."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        from raysynth.config import ConfigError

        raise ConfigError(
            "partition: static k-means partitions (bound/sync objectives) need FAISS, which is not installed: "
            "pip install 'raysynth[cpu]' (or 'raysynth[gpu]' on a CUDA node), or set partition.method=online"
        ) from None


def kmeans_partition(x, k: int, niter: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """FAISS k-means of the rows of ``x`` (N×d, or N×... flattened).

    Returns ``(assignments, centroids)``: a LongTensor (N,) of region ids in [0, k) and a
    float tensor (k×d). Deterministic for a given ``seed``.
    """
    import faiss

    data = _as_float32(x)
    n, d = data.shape
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= number of points, got k={k} for {n} points")
    use_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    # max_points_per_centroid: FAISS would otherwise subsample large sets silently
    kmeans = faiss.Kmeans(d, k, niter=niter, seed=seed, gpu=use_gpu, verbose=False, max_points_per_centroid=1 << 30)
    kmeans.train(data)
    _, labels = kmeans.index.search(data, 1)
    return torch.from_numpy(labels.reshape(-1).astype(np.int64)), torch.from_numpy(kmeans.centroids.copy())


class OnlineKMeans:
    """Mini-batch k-means with per-centre learning rate 1/count (the lightweight variant)."""

    def __init__(self, centroids: torch.Tensor):
        self.centroids = centroids.detach().to(torch.float32).clone()
        self.counts = torch.zeros(len(centroids))

    @classmethod
    def from_data(cls, x: torch.Tensor, k: int, seed: int = 0) -> "OnlineKMeans":
        """Centres initialised on k distinct rows of ``x`` drawn with ``seed``."""
        x = x.detach().reshape(len(x), -1).to(torch.float32)
        if not 1 <= k <= len(x):
            raise ValueError(f"k-means needs 1 <= k <= number of points, got k={k} for {len(x)} points")
        g = torch.Generator().manual_seed(seed)
        return cls(x[torch.randperm(len(x), generator=g)[:k]])

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().reshape(len(x), -1).to(torch.float32)
        return torch.cdist(x, self.centroids).argmin(dim=1)

    def partial_fit(self, x: torch.Tensor) -> torch.Tensor:
        """Assign ``x``, move the centres, return the assignments (before the move)."""
        x = x.detach().reshape(len(x), -1).to(torch.float32)
        labels = self.assign(x)
        k = len(self.centroids)
        added = torch.bincount(labels, minlength=k).to(torch.float32)
        sums = torch.zeros_like(self.centroids).index_add_(0, labels, x)
        total = self.counts + added
        moved = added > 0
        # z <- (c·z + Σx) / (c + m): the sequential η = 1/count updates, batched
        self.centroids[moved] = (self.counts[moved, None] * self.centroids[moved] + sums[moved]) / total[moved, None]
        self.counts = total
        return labels

    def state_dict(self) -> dict:
        return {"centroids": self.centroids.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.centroids = state["centroids"].clone()
        self.counts = state["counts"].clone()
