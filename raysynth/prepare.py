"""What runs once before the trials — as Ray tasks with ``resources.prepare``, started by
the driver — each result cached, so a warm cache makes this a few file checks.

1. **Backbone** — raysynth's own pretraining on the base classes (when no pretrained
   CLIP weights are given).
2. **Pools** — one synthetic pool per strength the search may ask for (sharded Ray Data
   generation, :mod:`raysynth.pool.pipeline`).
3. **Partitions** — one FAISS k-means per (strength, K) for the objectives that use
   regions (static partitions).
4. **Per-class quality** — the ``grouped`` and ``quality`` weightings need each class's
   measured fidelity q_c (and groups) before the search: :func:`measure_class_quality`.

Fidelity is the model-based discrepancy of the ICML 2025 paper (Definition 3.1) between
a class's synthetic and real images, d_c = mean_{s∈S_c, u∈G_c} ‖h(s) − h(u)‖, with h the
frozen pretrained backbone's L2-normalised image features; q_c = −z-score of d_c across
classes, so q_c > 0 means "closer to its real images than the average class".
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from raysynth.cluster import ray_options, resources_of, wait_for_resources, work_device
from raysynth.config import Config, PoolConfig
from raysynth.data import cached_split
from raysynth.home import adopt_home, home_env, published
from raysynth.losses import kmeans_partition, parse_loss
from raysynth.losses.bound import pairwise_distance
from raysynth.pool.pipeline import generate_variants, pool_options
from raysynth.train.data import train_data
from raysynth.train.evaluate import encode
from raysynth.train.model import build_model
from raysynth.train.pretrain import pretrain_backbone, pretrained_path

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """What the driver made sure exists before the first trial."""

    backbone_path: str | None  # raysynth's own pretrained backbone (None: model.pretrained)
    pool_keys: dict[str, str]  # pool label (its strength or strength set) -> pool key
    generated: int  # pools generated now (0 on a warm cache)


def prepare(config: Config, pools: list[PoolConfig] | None = None, clusters: list[float] | None = None,
            elastic: bool = False) -> Prepared:
    """Pretrain the backbone, generate the pools and compute the k-means partitions the
    search can ask for (each cached; a warm cache makes this a few file checks). The
    heavy steps run as Ray tasks with ``resources.prepare`` (:func:`on_cluster`).
    ``pools``: the pool variants trials may ask for (default: the config's own; see
    :func:`raysynth.search.space.pool_variants`). ``elastic``: the cluster's autoscaler
    adds nodes, so generation starts with its first actor and grows
    (:func:`raysynth.pool.pipeline.generate_pools`)."""
    split = cached_split(config)
    pools = pools or [config.pool]
    # 1. backbone
    backbone = None
    if not config.model.pretrained:
        path = pretrained_path(split, config.model)
        backbone = str(path) if published(path) else on_cluster(config, _pretrain, config)
    # 2. pools: one generation run per strength set (its strengths share the actors)
    made = generate_variants(split, pools, **pool_options(config, elastic))
    keys = {label: key for label, (key, _) in made.items()}
    generated = sum(now for _, now in made.values())
    # 3. partitions: loading a trial's data computes and caches its partition when missing
    if any(o.needs_partitions for o in parse_loss(config.loss)) and config.partition.method == "static":
        trials = [
            dataclasses.replace(config, pool=pool, partition=dataclasses.replace(config.partition, clusters_per_class=m))
            for pool in pools
            for m in clusters or [config.partition.clusters_per_class]
        ]
        on_cluster(config, _partitions, trials)
    return Prepared(backbone, keys, generated)


def on_cluster(config: Config, fn, *args):
    """``fn(*args)`` as a Ray task asking for ``resources.prepare`` (a GPU node's GPU when
    the cluster has them), not in the driver, which may sit on a CPU-only head. It runs
    here without Ray (a library call, a test) and where a task would land on this very
    machine anyway: a one-node cluster and no GPU asked for (a task would only add a
    worker process start)."""
    import ray

    if not ray.is_initialized():
        return fn(*args)
    unit = resources_of(config, "prepare")
    if not unit.get("GPU") and _only_node_is_here():
        return fn(*args)
    from ray.util.placement_group import remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    # reserved first, so a cluster that cannot give it fails after search.resource_wait_s
    pg = wait_for_resources([unit], f"preparation ({getattr(fn, '__name__', 'task').strip('_')})", config.search.resource_wait_s)
    try:
        task = ray.remote(**ray_options(unit), max_retries=0)(_in_home)
        strategy = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=False)
        return ray.get(task.options(scheduling_strategy=strategy).remote(home_env(), fn, *args))
    finally:
        remove_placement_group(pg)


def _only_node_is_here() -> bool:
    import ray

    alive = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    return alive == [ray.get_runtime_context().get_node_id()]


def _in_home(home: dict[str, str], fn, *args):
    from raysynth.logs import setup_logging

    adopt_home(home)  # the driver's, not the worker node's
    setup_logging()  # a Ray worker: its progress lines reach the driver
    return fn(*args)


def _pretrain(config: Config) -> str:
    return str(pretrain_backbone(cached_split(config), config.model, seed=config.train.seed))


def _partitions(trials: list[Config]) -> None:
    for trial in trials:
        train_data(trial, use_synthetic=True)


# ------------------------------------------------------------------ 4. per-class quality


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

    def to_dict(self) -> dict[str, Any]:
        return {"quality": self.quality, "discrepancy": self.discrepancy, "groups": self.groups,
                "pool_param": self.pool_param, "by_pool": {k: v.to_dict() for k, v in self.by_pool.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WeightContext":
        by_pool = {k: cls.from_dict(v) for k, v in data.get("by_pool", {}).items()}
        return cls(data["quality"], data["discrepancy"], data["groups"], data.get("pool_param", ""), by_pool)


def pool_value(value: Any) -> str:
    """A searched pool dimension's value as a key: a strength or a strength set's name."""
    return value if isinstance(value, str) else f"{float(value):g}"


def measure_class_quality(config: Config, groups: int = 0, by: str = "quality") -> WeightContext:
    """q_c of every class on the frozen backbone's features; with ``groups`` > 0 also a
    group per class: quantiles of q (``by='quality'``) or k-means of the class-mean
    features (``by='features'``)."""
    split = cached_split(config)
    data = train_data(config, use_synthetic=True)
    model = build_model(config, split.num_classes, with_objectives=False).to(work_device())
    real = encode(model, data.real_images)
    syn = encode(model, data.syn_images)
    d = class_discrepancy(real, data.real_labels, syn, data.syn_class, split.num_classes)
    context = WeightContext(quality=fidelity_scores(d), discrepancy=d)
    if groups and by == "quality":
        context.groups = quality_groups(context.quality, groups)
    elif groups:
        means = torch.stack([real[data.real_labels == c].mean(0) for c in range(split.num_classes)])
        context.groups = feature_groups(means, groups, seed=config.search.seed)
    return context


def class_discrepancy(real: torch.Tensor, real_labels: torch.Tensor, syn: torch.Tensor, syn_class: torch.Tensor, num_classes: int) -> list[float]:
    """Definition 3.1 per class on features (N×d): mean ‖h(s) − h(u)‖ over real s and
    synthetic u of the class (NaN for a class without synthetic images)."""
    real, syn = F.normalize(real, dim=-1), F.normalize(syn, dim=-1)
    out = []
    for c in range(num_classes):
        s, u = real[real_labels == c], syn[syn_class == c]
        out.append(float(pairwise_distance(s, u).mean()) if len(s) and len(u) else float("nan"))
    return out


def fidelity_scores(discrepancy: list[float]) -> list[float]:
    """q_c = −(d_c − mean d) / std d (0 for every class when all d_c are equal)."""
    d = torch.tensor(discrepancy, dtype=torch.float64)
    finite = torch.isfinite(d)
    mean = d[finite].mean()
    std = d[finite].std() if finite.sum() > 1 else torch.tensor(0.0, dtype=torch.float64)
    q = torch.where(finite, -(d - mean) / (std if std > 0 else 1.0), torch.zeros_like(d))
    return [float(v) for v in q]


def quality_groups(quality: list[float], groups: int) -> list[int]:
    """Quantile groups of q: group 0 holds the least faithful classes."""
    order = sorted(range(len(quality)), key=lambda c: quality[c])
    out = [0] * len(quality)
    for rank, c in enumerate(order):
        out[c] = min(groups - 1, rank * groups // len(quality))
    return out


def feature_groups(class_means: torch.Tensor, groups: int, seed: int = 0) -> list[int]:
    """k-means (FAISS) of the class-mean features into ``groups`` groups."""
    labels, _ = kmeans_partition(F.normalize(class_means, dim=-1), min(groups, len(class_means)), niter=50, seed=seed)
    return labels.tolist()
