"""What a trial trains on, loaded (never made) and memoised per worker process.

A trial never pretrains a backbone, runs a generator or runs k-means: ``raysynth.prepare``
makes all three before the search, and trials only *load* them from RAYSYNTH_HOME.
Loaded splits, pools and partitions are memoised per process, so with
``reuse_actors=True`` a Tune actor pays for loading once, not once per trial.
"""

from __future__ import annotations

import functools
from pathlib import Path

from raysynth.config import Config
from raysynth.data import cached_split
from raysynth.losses import parse_loss
from raysynth.pool import PoolStore, pool_key
from raysynth.train.loop import TrainData
from raysynth.train.partitions import load_or_compute, num_clusters, partition_path, partition_vectors


@functools.lru_cache(maxsize=8)
def _pool_tensors(root: str, key: str, gamma: float, num_classes: int, filter: str = "none", fraction: float = 0.2):
    return PoolStore(root).load(key).tensors(gamma, num_classes, filter, fraction)


def train_data(config: Config, use_synthetic: bool = True, store_root: str | Path | None = None) -> TrainData:
    """The real shots and validation split, plus (``use_synthetic``) the config's pool with
    its soft labels, filter rule and partitions."""
    split = cached_split(config)
    data = TrainData(
        real_images=split.train.images,
        real_labels=split.train.labels,
        val_images=split.val.images,
        val_labels=split.val.labels,
        num_classes=split.num_classes,
    )
    if use_synthetic:
        store = PoolStore(store_root)
        key = pool_key(split.fingerprint, config.pool)
        if not store.exists(key):
            raise FileNotFoundError(f"synthetic pool {key} missing from {store.root}: the driver must generate it first")
        data.syn_images, data.syn_soft_labels, data.syn_class = _pool_tensors(
            str(store.root), key, config.pool.gamma, split.num_classes, config.pool.filter, config.pool.filter_fraction
        )
        if any(o.needs_partitions for o in parse_loss(config.loss)):
            # partitions are of the filtered pool: the filter is part of their cache key
            selection = key if config.pool.filter == "none" else f"{key}-{config.pool.filter}-{config.pool.filter_fraction}"
            _attach_partitions(config, data, split.fingerprint, selection)
    return data


_partition_memo: dict[Path, tuple] = {}  # per process: a trial loads each partition once


def _attach_partitions(config: Config, data: TrainData, split_fingerprint: str, pool: str) -> None:
    k = num_clusters(config.partition, data.num_classes, len(data.real_labels) + len(data.syn_images))
    data.num_partitions = k
    if config.partition.method == "online":
        data.real_vectors, data.syn_vectors = partition_vectors(config, data.real_images, data.syn_images)
        return
    path = partition_path(config, split_fingerprint, pool, k)
    if path not in _partition_memo:
        _partition_memo[path] = load_or_compute(config, split_fingerprint, pool, data.real_images, data.syn_images, k)[:2]
    data.real_part, data.syn_part = _partition_memo[path]
