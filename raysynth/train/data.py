"""What a run trains on, loaded (never made) by the keys of its run context.

A trial never pretrains a backbone, runs a generator or runs k-means: the driver
(:func:`raysynth.prepare.prepare`) makes all three before the search and names them in the
:class:`raysynth.context.RunContext`; this module only *loads* them. Each split, pool and
partition is read once per process (:func:`raysynth.context.loaded`), so with
``reuse_actors=True`` a Tune actor pays for loading once, not once per trial.
"""

from __future__ import annotations

from raysynth.config import Config
from raysynth.context import RunContext, loaded
from raysynth.losses import Objective
from raysynth.pool import PoolStore, pool_label
from raysynth.train.loop import TrainData
from raysynth.train.partitions import load_partition, num_clusters, partition_vectors


def pool_selection(config: Config, key: str) -> str:
    """The pool's images a run trains on, as a name: the pool, or the pool after its filter
    (partitions are of the filtered pool: the filter is part of their key)."""
    return key if config.pool.filter == "none" else f"{key}-{config.pool.filter}-{config.pool.filter_fraction}"


def train_data(config: Config, context: RunContext, objectives: list[Objective], use_synthetic: bool = True) -> TrainData:
    """The real shots and validation split, plus (``use_synthetic``) the config's pool with
    its soft labels, filter rule and, where an objective needs them, partitions."""
    split = context.split()
    data = TrainData(
        real_images=split.train.images,
        real_labels=split.train.labels,
        val_images=split.val.images,
        val_labels=split.val.labels,
        num_classes=split.num_classes,
    )
    if not use_synthetic:
        return data
    label = pool_label(config.pool)
    key = context.pool_key(label)
    pool = config.pool
    data.syn_images, data.syn_soft_labels, data.syn_class = loaded(
        ("pool", key, pool.gamma, pool.filter, pool.filter_fraction),
        lambda: PoolStore().load(key).mapped(pool.gamma, split.num_classes, pool.filter, pool.filter_fraction),
    )
    if any(o.needs_partitions for o in objectives):
        k = num_clusters(config.partition, data.num_classes, len(data.real_labels) + len(data.syn_images))
        data.num_partitions = k
        if config.partition.method == "online":
            data.real_vectors, data.syn_vectors = partition_vectors(config, context, data.real_images, data.syn_images)
        else:
            data.real_part, data.syn_part = load_partition(context.partition(pool_selection(config, key), k))
    return data
