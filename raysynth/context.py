"""What the driver resolves once and every trial only looks up: :class:`RunContext`.

The driver (:func:`raysynth.prepare.prepare`) makes the artifacts a search shares — the
backbone, the pools, the partitions, the per-class quality — and writes down, once, where
each lies and what it is called. A trial, a Ray Train worker or a preparation task is
handed that :class:`RunContext` and *loads* through it, by key: a missing artifact is an
error that names it, never a recompute.

Loading goes through one cache per process (:func:`loaded`), keyed by the artifact's
key, so with ``reuse_actors=True`` a Tune actor reads each split, pool, partition and
backbone once, not once per trial.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from raysynth.config import Config, DataConfig, ModelConfig, PoolConfig
from raysynth.data import load_split as read_split
from raysynth.data.base import float_images
from raysynth.home import adopt_home, fetch
from raysynth.models import create_backbone
from raysynth.pool import PoolStore, pool_label

LOADED_LIMIT = 8  # artifacts held per process (a search's split, its pools, partitions, backbone)
_loaded: collections.OrderedDict[tuple, Any] = collections.OrderedDict()


def loaded(key: tuple, load: Callable[[], Any]) -> Any:
    """``load()``'s result, read once per process per ``key`` (the least recently used
    of more than :data:`LOADED_LIMIT` artifacts is let go)."""
    if key in _loaded:
        _loaded.move_to_end(key)
        return _loaded[key]
    value = load()
    _loaded[key] = value
    while len(_loaded) > LOADED_LIMIT:
        _loaded.popitem(last=False)
    return value


def load_split(dataset: str, data: DataConfig):
    """The few-shot split of a dataset, read once per process."""
    key = ("split", dataset, json.dumps(dataclasses.asdict(data), sort_keys=True))
    return loaded(key, lambda: read_split(dataset, data))


def split_of(config: Config):
    """The few-shot split of a config, read once per process (the driver's and the
    commands' way in; trials read it through their :class:`RunContext`)."""
    return load_split(config.dataset, config.data)


def read_backbone(model: ModelConfig, checkpoint: str | None) -> dict:
    """The backbone's weights as a state dict: ``model.pretrained``, or raysynth's own
    ``checkpoint`` (fetched from a remote home on first use)."""
    if checkpoint is not None and not fetch(Path(checkpoint)):
        raise FileNotFoundError(f"pretrained backbone missing: {checkpoint} (run `raysynth pretrain`)")
    return {k: v.clone() for k, v in create_backbone(model, checkpoint).state_dict().items()}


def pool_value(value: Any) -> str:
    """A searched pool dimension's value as a key: a strength or a strength set's name."""
    return value if isinstance(value, str) else f"{float(value):g}"


@dataclass(frozen=True)
class QualityRequest:
    """What a weighting needs measured before the search: q_c per class, and ``groups`` >
    0 groups of classes by quality quantiles (``by='quality'``) or by k-means of the
    class-mean features (``by='features'``)."""

    groups: int = 0
    by: str = "quality"


@dataclass
class WeightContext:
    """Per-class quality measured before the search, carried to every trial."""

    quality: list[float] = field(default_factory=list)  # q_c per class (classes order)
    discrepancy: list[float] = field(default_factory=list)  # d_c per class
    groups: list[int] = field(default_factory=list)  # group of each class (grouped weighting)
    # a search over pools (pool.strength or pool.strengths searched): each pool's own
    # measurement, keyed by the searched dimension's value (``pool_value``)
    pool_param: str = ""
    by_pool: dict[str, "WeightContext"] = field(default_factory=dict)

    def for_params(self, params: dict[str, Any]) -> "WeightContext":
        """The measurement of the pool a trial's params select (this one without pools)."""
        if not self.by_pool:
            return self
        return self.by_pool[pool_value(params[self.pool_param])]


@dataclass(frozen=True)
class RunContext:
    """Everything a trial needs by key, resolved once by the driver.

    ``pools`` maps a pool variant's label (:func:`raysynth.pool.store.pool_label`: its
    strength or strength set) to its key in the pool store; ``partitions`` maps
    :meth:`partition_id` to the ``.npz`` of that partition. ``space`` is the parsed search
    space (a :class:`raysynth.search.space.Space`; None outside a search).
    """

    home: dict[str, str]
    dataset: str
    data: DataConfig
    split_fingerprint: str
    classes: tuple[str, ...]
    metaclass: str
    backbone: str | None = None  # raysynth's own pretrained backbone (None: model.pretrained)
    pools: dict[str, str] = field(default_factory=dict)
    partitions: dict[str, str] = field(default_factory=dict)
    weights: WeightContext | None = None
    space: Any = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def enter(self) -> None:
        """Take the driver's home over (a Ray worker, a task)."""
        adopt_home(self.home)

    def split(self):
        return load_split(self.dataset, self.data)

    def backbone_state(self, model: ModelConfig) -> dict:
        """The backbone's weights: ``model.pretrained``, or raysynth's own pretrained
        checkpoint this context names (fetched from a remote home on first use)."""
        checkpoint = None if model.pretrained else self.backbone
        key = ("backbone", json.dumps(dataclasses.asdict(model), sort_keys=True), checkpoint)
        return loaded(key, lambda: read_backbone(model, checkpoint))

    def pool(self, pool: PoolConfig) -> tuple[str, Any, torch.Tensor, torch.Tensor]:
        """(selection, images read on demand as uint8, soft labels, target class) of the
        pool variant a config trains on, after its filter rule; the selection names those
        images (:func:`pool_selection`: the key of their partitions)."""
        key = self.pool_key(pool_label(pool))
        images = loaded(
            ("pool", key, pool.gamma, pool.filter, pool.filter_fraction),
            lambda: PoolStore().load(key).mapped(pool.gamma, self.num_classes, pool.filter, pool.filter_fraction),
        )
        return (pool_selection(pool, key), *images)

    def regions(self, selection: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(region of every real shot, region of every synthetic image) of the partition of
        ``selection`` (a pool after its filter) into K = ``k`` regions."""
        path = Path(self.partition(selection, k))

        def read():
            if not fetch(path):  # copied from a remote home on first use
                raise FileNotFoundError(f"partition {path} missing: the driver computes it before the search")
            with np.load(path, allow_pickle=False) as z:
                return torch.from_numpy(z["real"]), torch.from_numpy(z["synthetic"])

        return loaded(("partition", str(path)), read)

    def samples(self, pool: PoolConfig, per_class: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Up to ``per_class`` real shots and synthetic images of each class (the pool
        variant ``pool`` selects), as float arrays in [0, 1] (reports, plots)."""
        split = self.split()
        _, images, _, target = self.pool(pool)
        real = [float_images(split.train.images[split.train.labels == c][:per_class]).numpy() for c in range(self.num_classes)]
        synthetic = [float_images(images[torch.nonzero(target == c).flatten()[:per_class]]).numpy() for c in range(self.num_classes)]
        return real, synthetic

    def pool_key(self, label: str) -> str:
        if label not in self.pools:
            raise FileNotFoundError(
                f"pool with strength {label} was not prepared by the driver (prepared: {', '.join(self.pools) or 'none'}); "
                "a trial only loads the pools the search's space names")
        return self.pools[label]

    def partition(self, selection: str, k: int) -> str:
        pid = partition_id(selection, k)
        if pid not in self.partitions:
            raise FileNotFoundError(
                f"partition {pid} was not prepared by the driver (prepared: {', '.join(self.partitions) or 'none'}); "
                "search partition.clusters_per_class as a 'choice' so that each K is computed before the search")
        return self.partitions[pid]


def pool_selection(pool: PoolConfig, key: str) -> str:
    """The images a run trains on, as a name: the pool, or the pool after its filter
    (partitions are of the filtered pool: the filter is part of their key)."""
    return key if pool.filter == "none" else f"{key}-{pool.filter}-{pool.filter_fraction}"


def partition_id(selection: str, k: int) -> str:
    """A partition's name in a :class:`RunContext`: the pool (after its filter), K."""
    return f"{selection}/K={k}"
