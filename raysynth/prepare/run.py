"""What runs once before the trials — as Ray tasks with ``resources.prepare``, started by
the driver — each result cached, so a warm cache makes this a few file checks. Its
result is the search's :class:`raysynth.context.RunContext`: where each artifact lies.

1. **Backbone** — raysynth's own pretraining on the base classes (when no pretrained
   CLIP weights are given): :mod:`raysynth.prepare.backbone`.
2. **Pools** — one synthetic pool per strength the search may ask for (sharded Ray Data
   generation, :mod:`raysynth.pool.pipeline`).
3. **Partitions** — one FAISS k-means per (pool, K) for the objectives that use regions
   (static partitions): :mod:`raysynth.prepare.partitions`.
4. **Per-class quality** — the ``grouped`` and ``quality`` weightings need each class's
   measured fidelity q_c (and groups): :mod:`raysynth.prepare.quality`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from raysynth.cluster import ray_options, resources_of, wait_for_resources
from raysynth.config import Config, PoolConfig
from raysynth.context import QualityRequest, RunContext, WeightContext, partition_id, pool_value, split_of
from raysynth.home import adopt_home, home_env, published
from raysynth.losses import parse_loss
from raysynth.pool.pipeline import generate_variants, pool_actor_options
from raysynth.prepare.backbone import pretrain_backbone, pretrained_path
from raysynth.prepare.partitions import ensure_partition
from raysynth.prepare.quality import measure_class_quality
from raysynth.train.data import train_data


@dataclass(frozen=True)
class Plan:
    """What a search may ask for, so what to make before it (from
    :meth:`raysynth.search.space.Space.plan`; default: the config's own pool and K)."""

    pools: list[PoolConfig] = field(default_factory=list)  # every pool variant a trial may train on
    clusters: list[float] = field(default_factory=list)  # every clusters_per_class a trial may ask for
    quality: QualityRequest | None = None  # what the weighting needs measured (None: nothing)
    pool_param: str = ""  # the searched pool dimension, when several pools are searched
    pool_values: list[Any] = field(default_factory=list)  # its values, in ``pools`` order


def prepare(config: Config, plan: Plan | None = None, elastic: bool = False, space: Any = None) -> RunContext:
    """Pretrain the backbone, generate the pools, compute the k-means partitions and
    measure the class quality the search can ask for (each cached; a warm cache makes
    this a few file checks). The heavy steps run as Ray tasks with
    ``resources.prepare`` (:func:`on_cluster`). ``elastic``: the cluster's autoscaler
    adds nodes, so generation starts with its first actor and grows
    (:func:`raysynth.pool.pipeline.generate_strengths`). ``space``: the parsed search space,
    carried to the trials in the returned context."""
    split = split_of(config)
    plan = plan or Plan()
    pools = plan.pools or [config.pool]
    context = RunContext(
        home=home_env(), dataset=config.dataset, data=config.data, split_fingerprint=split.fingerprint,
        classes=tuple(split.classes), metaclass=split.metaclass, space=space,
    )
    # 1. backbone
    if not config.model.pretrained:
        path = pretrained_path(split, config.model)
        backbone = str(path) if published(path) else on_cluster(config, _pretrain, config)
        context = dataclasses.replace(context, backbone=backbone)
    # 2. pools: one generation run per strength set (its strengths share the actors)
    made = generate_variants(split, pools, **pool_actor_options(config, elastic))
    context = dataclasses.replace(context, pools={label: key for label, (key, _) in made.items()})
    # 3. partitions, one per (pool, K)
    if config.partition.method == "static" and any(o.needs_partitions for o in parse_loss(config.loss)):
        clusters = plan.clusters or [config.partition.clusters_per_class]
        trials = [
            dataclasses.replace(config, pool=pool, partition=dataclasses.replace(config.partition, clusters_per_class=m))
            for pool in pools
            for m in clusters
        ]
        context = dataclasses.replace(context, partitions=on_cluster(config, _partitions, trials, context))
    # 4. per-class quality, on every pool a trial may train on
    if plan.quality is not None:
        context = dataclasses.replace(context, weights=_measure(config, plan, pools, context))
    return context


def _measure(config: Config, plan: Plan, pools: list[PoolConfig], context: RunContext) -> WeightContext:
    """One measurement per pool variant: with one pool, its measurement; with several, the
    first pool's, carrying each pool's own under the searched value (``by_pool``)."""
    configs = [dataclasses.replace(config, pool=pool) for pool in pools]
    if not plan.pool_param or len(pools) == 1:
        return on_cluster(config, measure_class_quality, configs[0], context, plan.quality)
    by_pool = {pool_value(v): on_cluster(c, measure_class_quality, c, context, plan.quality) for v, c in zip(plan.pool_values, configs)}
    first = next(iter(by_pool.values()))
    return dataclasses.replace(first, pool_param=plan.pool_param, by_pool=by_pool)


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
    return str(pretrain_backbone(split_of(config), config.model, seed=config.train.seed))


def _partitions(trials: list[Config], context: RunContext) -> dict[str, str]:
    """Every trial config's partition, computed where missing: partition id -> path."""
    out = {}
    for trial in trials:
        data = train_data(trial, context, [], use_synthetic=True)  # the pool's images, no partitions yet
        selection = context.pool(trial.pool)[0]  # the name of the images just loaded
        k = trial.partition.num_clusters(data.num_classes, len(data.real_labels) + len(data.syn_images))
        path, _ = ensure_partition(trial, context, selection, data.real_images, data.syn_images, k)
        out[partition_id(selection, k)] = str(path)
    return out
