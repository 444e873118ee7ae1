"""Partitions for the bound and SyNC objectives, computed once per K and cached.

The driver computes them before the search (one FAISS k-means per cluster count a trial
may ask for) and trials only load them: a partition is a pair of int64 arrays (region
of every real shot, region of every synthetic image) in an ``.npz`` under
``RAYSYNTH_HOME/partitions``, keyed by a hash of exactly what it depends on (split,
pool, space, K, iterations, seed, and the backbone for feature space).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from raysynth.atomic import atomic_file
from raysynth.config import Config, PartitionConfig
from raysynth.home import fetch, fingerprint, publish, raysynth_home
from raysynth.losses import kmeans_partition
from raysynth.train.evaluate import as_input, encode
from raysynth.train.model import build_model

log = logging.getLogger(__name__)


def num_clusters(config: PartitionConfig, num_classes: int, num_points: int | None = None) -> int:
    """K = round(clusters_per_class x classes), at least 1 and at most the point count."""
    k = max(1, round(config.clusters_per_class * num_classes))
    return min(k, num_points) if num_points else k


def pixel_vectors(images, side: int = 32, chunk: int = 1024) -> torch.Tensor:
    """Flattened pixels (area-resized to at most ``side`` a side) of float or uint8 images,
    or of a memory-mapped pool, read a chunk at a time."""
    out = []
    for i in range(0, len(images), chunk):
        x = as_input(images[i : i + chunk], torch.device("cpu"))
        if x.shape[-1] > side:
            x = F.interpolate(x, size=(side, side), mode="area")
        out.append(x.reshape(len(x), -1).to(torch.float32))
    return torch.cat(out) if out else torch.empty(0, 3 * side**2)


def partition_vectors(config: Config, real: torch.Tensor, synthetic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What k-means clusters: raw pixels, or frozen pretrained-backbone features."""
    if config.partition.space == "pixels":
        side = config.partition.pixel_side
        return pixel_vectors(real, side), pixel_vectors(synthetic, side)
    model = build_model(config, 1, with_objectives=False)  # the frozen backbone; the head is unused
    return encode(model, real), encode(model, synthetic)


def partition_path(config: Config, split_fingerprint: str, pool: str, k: int, home: Path | None = None) -> Path:
    p = config.partition
    backbone = (config.model.name, config.model.pretrained, vars(config.model.pretrain)) if p.space == "features" else None
    pixels = p.pixel_side if p.space == "pixels" else None
    key = fingerprint("partition-v1", split_fingerprint, pool, k, p.space, p.niter, p.seed, backbone, pixels)
    return (home or raysynth_home()) / "partitions" / f"{key}.npz"


def load_or_compute(
    config: Config, split_fingerprint: str, pool: str, real: torch.Tensor, synthetic: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(real regions, synthetic regions, computed_now) for K = k."""
    path = partition_path(config, split_fingerprint, pool, k)
    if fetch(path):  # copied from a remote home on first use
        with np.load(path, allow_pickle=False) as z:
            return torch.from_numpy(z["real"]), torch.from_numpy(z["synthetic"]), False
    real_vec, syn_vec = partition_vectors(config, real, synthetic)
    k = min(k, len(real_vec) + len(syn_vec))
    log.info("k-means: %d real + %d synthetic points into K=%d regions (%s)", len(real_vec), len(syn_vec), k, config.partition.space)
    labels, _ = kmeans_partition(torch.cat([real_vec, syn_vec]), k, niter=config.partition.niter, seed=config.partition.seed)
    real_part, syn_part = labels[: len(real_vec)], labels[len(real_vec) :]
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, real=real_part.numpy(), synthetic=syn_part.numpy())

    atomic_file(path, write)
    publish(path)
    return real_part, syn_part, True
