"""What a run trains on, loaded (never made) by the keys of its run context.

A trial never pretrains a backbone, runs a generator or runs k-means: the driver
(:func:`raysynth.prepare.prepare`) makes all three before the search and names them in the
:class:`raysynth.context.RunContext`; this module only *loads* them, through that context,
which reads each split, pool, partition and backbone once per process: with
``reuse_actors=True`` a Tune actor pays for loading once, not once per trial.
"""

from __future__ import annotations

from raysynth.config import Config
from raysynth.context import RunContext
from raysynth.losses import Objective
from raysynth.train.loop import TrainData
from raysynth.train.partitions import partition_vectors


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
    selection, data.syn_images, data.syn_soft_labels, data.syn_class = context.pool(config.pool)
    if any(o.needs_partitions for o in objectives):
        k = config.partition.num_clusters(data.num_classes, len(data.real_labels) + len(data.syn_images))
        data.num_partitions = k
        if config.partition.method == "online":
            data.real_vectors, data.syn_vectors = partition_vectors(config, context, data.real_images, data.syn_images)
        else:
            data.real_part, data.syn_part = context.regions(selection, k)
    return data
