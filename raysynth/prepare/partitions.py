"""Partitions for the bound and SyNC objectives, computed once per (pool, K) before the
search and cached.

A partition is a pair of int64 arrays (region of every real shot, region of every
synthetic image) in an ``.npz`` under ``RAYSYNTH_HOME/partitions``, keyed by a hash of
exactly what it depends on (split, pool, space, K, iterations, seed, and the backbone
for feature space). Trials only load it, by the path their
:class:`raysynth.context.RunContext` names.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from raysynth.atomic import atomic_file
from raysynth.config import Config
from raysynth.context import RunContext
from raysynth.home import fetch, fingerprint, publish, raysynth_home
from raysynth.losses import kmeans_partition
from raysynth.train.partitions import partition_vectors

log = logging.getLogger(__name__)


def partition_path(config: Config, split_fingerprint: str, pool: str, k: int, home: Path | None = None) -> Path:
    p = config.partition
    backbone = (config.model.name, config.model.pretrained, vars(config.model.pretrain)) if p.space == "features" else None
    pixels = p.pixel_side if p.space == "pixels" else None
    key = fingerprint("partition-v1", split_fingerprint, pool, k, p.space, p.niter, p.seed, backbone, pixels)
    return (home or raysynth_home()) / "partitions" / f"{key}.npz"


def ensure_partition(
    config: Config, context: RunContext, pool: str, real: torch.Tensor, synthetic: torch.Tensor, k: int
) -> tuple[Path, bool]:
    """(the partition's path, computed_now) for K = k: FAISS k-means of the real shots and
    the pool's images, unless a cached copy exists here or in a remote home."""
    path = partition_path(config, context.split_fingerprint, pool, k)
    if fetch(path):  # copied from a remote home on first use
        return path, False
    real_vec, syn_vec = partition_vectors(config, context, real, synthetic)
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
    return path, True
