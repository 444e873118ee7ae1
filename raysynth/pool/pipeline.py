"""Pool generation with Ray Data: plan, shard, generate on an actor pool, finish.

1. **Plan.** One row per synthetic image (id, reference, target class, strength, seed).
   The plan and the per-image seeds are a pure function of the config, so the same
   config gives the same pool on any number of actors.
2. **Shards.** Rows are cut into shards of ``pool.shard_size`` images; a shard is the
   unit of work and of resumption (:mod:`raysynth.pool.shards`). A killed run, re-run,
   generates only the shards that are missing.
3. **Actors.** ``map_batches`` over the shard ids with ``ActorPoolStrategy(size=N)``: each
   actor loads the generator once (a trainable backend is fitted once beforehand by a
   Ray task and saved as safetensors) and the CLIP scorer if one is configured. Every
   pool a search needs (one per strength it can ask for) is generated in the same run,
   so the actors start once (:func:`generate_strengths`).
   Each actor asks for ``resources.generation`` (``gpu: auto``: a GPU when the cluster has
   or can add GPU nodes); CPU actors by default take a fraction of a CPU so
   that Ray Data's own tasks still get scheduled (a pool that takes every CPU hangs).
4. **Finish.** The actors wrote their shards into the pool's own directory in the store
   (``<key>/shards/``, or its twin in the home's bucket); the driver concatenates only the
   shards' manifests and writes ``meta.json`` last (:meth:`PoolStore.finish`). The images
   never pass through the driver: one upload per image (by the actor that made it), one
   download per node that trains on the pool.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from raysynth.atomic import atomic_directory
from raysynth.cluster import ray_options, resources_of, wait_for_resources
from raysynth.devices import work_device
from raysynth.config import Config, ConfigError, PoolConfig
from raysynth.data.base import FewShotSplit, ImageSet
from raysynth.generators import GENERATORS, create_generator
from raysynth.generators.quality import quality_controlled_shots
from raysynth.home import adopt_home, fingerprint, home_env, publish, published, remote_twin
from raysynth.logs import setup_logging
from raysynth.pool.shards import GenerateShards, ShardWork, finished_shards, plan_pool, shard_name, to_uint8
from raysynth.pool.store import PoolStore, pool_key, pool_label

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- fitting


def generator_key(split_fingerprint: str, config: PoolConfig) -> str:
    """What a trainable backend's fit depends on (not the strength or the plan)."""
    return fingerprint(
        "generator-v1",
        split_fingerprint,
        GENERATORS[config.generator].config_key(config),
        sorted(config.quality.items()),
        config.learn_from,
    )


def _fit_and_save(config: PoolConfig, classes: list[str], metaclass: str, learned: ImageSet, final: str, home: dict[str, str]) -> str:
    """Runs as a Ray task: fit the backend on the learned shots, save it atomically."""
    adopt_home(home)  # the driver's home: a remote one is where the result is published
    setup_logging()  # a Ray worker: its progress lines reach the driver (Ray forwards stdout)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    device = work_device()
    generator = create_generator(config, classes, metaclass, device)
    generator.fit(learned)
    with atomic_directory(Path(final)) as tmp:
        generator.save(tmp)
    publish(Path(final))  # to a remote home, where the generation actors fetch it
    return final


def ensure_fitted(split: FewShotSplit, config: PoolConfig, learned: ImageSet, store: PoolStore, use_gpu: bool) -> tuple[Path, bool]:
    """The trainable backend's saved weights (fitted now by a Ray task if missing)."""
    import ray

    path = store.root / "generators" / generator_key(split.fingerprint, config)
    if published(path, directory=True):
        return path, False
    log.info("generator %s: fitting on %d images (once; saved to %s)", config.generator, len(learned), path)
    task = ray.remote(num_cpus=1, num_gpus=1 if use_gpu else 0)(_fit_and_save)
    ray.get(task.remote(config, split.classes, split.metaclass, learned, str(path), home_env()))
    return path, True


# ---------------------------------------------------------------------------- driver


def actor_resources(config: Config) -> dict[str, float]:
    """Resources of one generation actor (``resources.generation``) as Ray options."""
    return ray_options(resources_of(config, "generation"))


def pool_actor_options(config: Config, elastic: bool = False) -> dict:
    """The keyword arguments of :func:`generate_pool` a whole config decides: what each
    actor asks for, how long the actors may wait for it, and whether the actors start
    as nodes arrive (``elastic``: a cluster whose autoscaler adds nodes)."""
    return {"resources": actor_resources(config), "wait_s": config.search.resource_wait_s, "elastic": elastic}


def generate_pool(
    split: FewShotSplit,
    config: PoolConfig,
    strength: float | None = None,
    store: PoolStore | None = None,
    resources: dict[str, float] | None = None,
    wait_s: float = 0.0,
    elastic: bool = False,
) -> tuple[str, bool]:
    """Make sure the pool for (split, config, strength) is in the store; returns (key,
    generated). See :func:`generate_strengths`."""
    strength = config.strength if strength is None else strength
    return generate_strengths(split, config, [strength], store, resources, wait_s, elastic)[strength]


@dataclass
class _PoolJob:
    """One pool (one strength) of a generation run: its plan and what is left of it."""

    strength: float
    key: str
    plan: pd.DataFrame
    shards: list[int]
    work: Path
    remote_work: str | None
    todo: list[int]

    @classmethod
    def open(cls, split: FewShotSplit, config: PoolConfig, strength: float, key: str, store: PoolStore) -> _PoolJob:
        plan = plan_pool(split.train, split.num_classes, config, strength)
        work = store.shard_dir(key)
        remote_work = remote_twin(work)  # a remote home: actors upload their shards there
        if remote_work is None:
            work.mkdir(parents=True, exist_ok=True)
        # (a remote home: nothing local here; this node fetches the whole pool when it trains)
        shards = sorted(plan["shard"].unique().tolist())
        done = finished_shards(work, remote_work)
        if done:
            log.info("pool %s: resuming, %d of %d shards already finished", key, len(done), len(shards))
        return cls(strength, key, plan, shards, work, remote_work, [s for s in shards if s not in done])

    def finish(self, store: PoolStore, meta: dict) -> None:
        missing = sorted(set(self.shards) - finished_shards(self.work, self.remote_work))
        if missing:
            where = self.remote_work or self.work
            raise RuntimeError(
                f"pool {self.key}: shards {missing[:5]} were not written to {where} (does every node see RAYSYNTH_HOME?)"
            )
        own = {"key": self.key, "strength": self.strength, "images": int(len(self.plan)), "shards": len(self.shards),
               "generated_shards": len(self.todo)}
        store.finish(self.key, [shard_name(s) for s in self.shards], {**own, **meta})


def generate_strengths(
    split: FewShotSplit,
    config: PoolConfig,
    strengths: list[float],
    store: PoolStore | None = None,
    resources: dict[str, float] | None = None,
    wait_s: float = 0.0,
    elastic: bool = False,
) -> dict[float, tuple[str, bool]]:
    """Make sure the pool of every strength in ``strengths`` is in the store.

    The missing ones are generated in **one** Ray Data run: one actor pool, each actor
    loading the generator once, over the shards of all of them (a search over three
    strengths pays the actors' start-up once, not three times).

    ``resources``: of one actor, as Ray options (default: ``resources.generation``'s
    defaults). All ``config.actors`` actors start together, waiting at most ``wait_s``
    seconds for their resources (0: forever); ``elastic`` (a cluster whose autoscaler
    adds nodes): generation starts with the first actor, waited for at most ``wait_s``,
    and grows to ``config.actors`` as nodes arrive.

    Returns strength -> (key, generated): ``generated`` is False on a cache hit, when
    nothing runs. An interrupted earlier run's finished shards are kept and not
    generated again.
    """
    store = store or PoolStore()
    result, missing = {}, {}
    for strength in dict.fromkeys(strengths):
        key = pool_key(split.fingerprint, config, strength)
        if store.exists(key):
            log.info("pool %s: cache hit (%s)", key, store.path(key))
            result[strength] = (key, False)
        else:
            missing[strength] = key
    if not missing:
        return result
    if config.learn_from == "prior" and split.prior is None:
        raise ConfigError(f"pool.learn_from: dataset '{split.name}' has no prior images; use 'shots'")
    jobs = [_PoolJob.open(split, config, s, key, store) for s, key in missing.items()]
    source = split.prior if config.learn_from == "prior" else split.train
    learned = quality_controlled_shots(source, split.classes, config.quality)

    start = time.perf_counter()
    timing = {}
    if any(job.todo for job in jobs):
        resources = resources or actor_resources(Config(pool=config))
        fitted = None
        if GENERATORS[config.generator].trainable:
            fitted, _ = ensure_fitted(split, config, learned, store, resources["num_gpus"] > 0)
        timing = _run_actors(jobs, config, split, learned, fitted, resources, wait_s, elastic)
    seconds = time.perf_counter() - start
    meta = {
        "split": split.fingerprint,
        "dataset": split.name,
        "classes": split.classes,
        "generator": GENERATORS[config.generator].config_key(config),
        "mode": config.mode,
        "strengths": config.strengths,  # per-image strengths drawn from this set (when set)
        "quality": config.quality,
        "clip_model": config.clip_model,
        "seconds": round(seconds, 2),  # of the whole run (every pool generated with this one)
        "pools_in_run": len(jobs),
        **timing,
    }
    for job in jobs:
        job.finish(store, meta)
        result[job.strength] = (job.key, True)
    n = sum(int(job.plan["shard"].isin(job.todo).sum()) for job in jobs)
    log.info("pools %s: %d images generated in %.1f s (%.1f images/s)", [j.key for j in jobs], n, seconds, n / max(seconds, 1e-9))
    return result


def generate_variants(split: FewShotSplit, pools: list[PoolConfig], **options) -> dict[str, tuple[str, bool]]:
    """:func:`generate_strengths` for pool variants (see raysynth.search.space.pool_variants):
    the strengths of one strength set in one generation run, each set a run of its own.
    Returns pool label (:func:`raysynth.pool.store.pool_label`) -> (key, generated)."""
    by_set: dict[tuple, list[PoolConfig]] = {}
    for pool in pools:
        by_set.setdefault(tuple(pool.strengths), []).append(pool)
    out = {}
    for variants in by_set.values():
        made = generate_strengths(split, variants[0], [v.strength for v in variants], **options)
        out.update({pool_label(v): made[v.strength] for v in variants})
    return out


def _bundle(resources: dict[str, float]) -> dict[str, float]:
    """One actor's Ray options as a placement-group bundle."""
    return {"CPU": resources["num_cpus"], "GPU": resources.get("num_gpus", 0.0), "memory": resources.get("memory", 0.0)}


@contextlib.contextmanager
def reserved(actors: int, resources: dict[str, float], wait_s: float = 0.0):
    """Run Ray Data inside a placement group holding exactly the actors' resources,
    waiting at most ``wait_s`` seconds for them (0: forever).

    Ray Data 2.60 otherwise sizes an execution from its autoscaling coordinator's
    reservations, which it shares (integer division) among every live requester —
    earlier executions whose requests have not expired yet, Ray Train runs: on a small
    machine a new execution can be granted 0 CPUs and wait forever. With a placement
    group its budget is the group's bundles, reserved up front.
    """
    import ray
    from ray.util.placement_group import remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    bundle = _bundle(resources)
    pg = wait_for_resources([dict(bundle) for _ in range(actors)], f"generation ({actors} actor(s))", wait_s)
    ctx = ray.data.DataContext.get_current()
    strategy = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
    with warnings.catch_warnings():
        # Ray 2.60 marks these fields deprecated ("Ray Data manages scheduling"); its own
        # scheduling is what hangs on 2 CPUs (see above), and they still work
        warnings.simplefilter("ignore", DeprecationWarning)
        saved = (ctx.scheduling_strategy, ctx.scheduling_strategy_large_args, ctx.op_resource_reservation_enabled)
        ctx.scheduling_strategy = ctx.scheduling_strategy_large_args = strategy
    # the group's bundles carry no object-store memory, which Ray Data's per-operator
    # budget would read as "one task in flight"; the group already bounds the work
    ctx.op_resource_reservation_enabled = False
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.scheduling_strategy, ctx.scheduling_strategy_large_args, ctx.op_resource_reservation_enabled = saved
        remove_placement_group(pg)


@contextlib.contextmanager
def first_actor_within(wait_s: float, actors: int, resources: dict[str, float]):
    """Elastic generation: wait (at most ``wait_s``; a ResourceWaitError after that) until
    one actor's resources exist, holding them in a one-bundle placement group that the
    first actor then takes; Ray Data adds actors up to ``actors`` as the autoscaler's
    nodes arrive. (Not Ray Data's own ``wait_for_min_actors_s``: its actor autoscaler
    may cancel the pending actor it is waiting for.)"""
    from ray.util.placement_group import remove_placement_group

    bundle = _bundle(resources)
    remove_placement_group(wait_for_resources([bundle], "generation (first actor)", wait_s))
    log.info("generation: elastic, 1 to %d actor(s) as nodes arrive", actors)
    yield


def _run_actors(jobs: list[_PoolJob], config, split, learned, fitted, resources, wait_s, elastic=False) -> dict:
    import ray

    todo = sum(len(job.todo) for job in jobs)
    actors = max(1, min(config.actors, todo))
    if elastic and actors > 1:
        with first_actor_within(wait_s, actors, resources):
            return {**_iterate(jobs, config, split, learned, fitted, resources,
                               ray.data.ActorPoolStrategy(min_size=1, max_size=actors)), "elastic": True}
    with reserved(actors, resources, wait_s):
        return {**_iterate(jobs, config, split, learned, fitted, resources, ray.data.ActorPoolStrategy(size=actors)),
                "elastic": False}


def _iterate(jobs: list[_PoolJob], config, split, learned, fitted, resources, compute) -> dict:
    """Run the shards on an actor pool; returns timings and the actors' placements."""
    import ray

    items = [{"pool": job.key, "shard": s} for job in jobs for s in job.todo]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map_batches(
        GenerateShards,
        fn_constructor_kwargs=dict(
            pools={job.key: ShardWork(job.plan, str(job.work), job.remote_work) for job in jobs},
            config=config,
            classes=split.classes,
            metaclass=split.metaclass,
            references=to_uint8(split.train.images),
            learned=None if fitted is not None else learned,
            fitted=None if fitted is None else str(fitted),
            threads=max(1, int(resources["num_cpus"])),
            home=home_env(),
        ),
        batch_size=1,
        batch_format="numpy",
        compute=compute,
        **resources,
    )
    total = sum(int(job.plan["shard"].isin(job.todo).sum()) for job in jobs)
    what = jobs[0].key if len(jobs) == 1 else f"{len(jobs)} pools (strengths {[j.strength for j in jobs]})"
    actors = compute.max_size
    log.info("%s: %d shards (%d images) on %s actor(s) with %s each", what, len(items), total,
             actors if compute.min_size == actors else f"1 to {actors}", resources)
    made, start, last = 0, time.perf_counter(), 0.0
    first = None  # (time, images) at the first finished shard: the rate excludes actor start-up
    startup = {"actor_start_s": 0.0, "actor_load_s": 0.0}  # the slowest actor's
    placements = set()
    for i, row in enumerate(ds.iter_rows(), 1):
        made += int(row["images"])
        placements.add((str(row["node"]), str(row["gpu_ids"])))
        for k in startup:
            startup[k] = max(startup[k], round(float(row[k]), 2))
        now = time.perf_counter() - start
        if first is None:
            first = (now, made)
        if i == 1 and len(items) > 1:
            log.info("%s: first shard after %.1f s (actors start and load the generator)", what, now)
        elif now - last > 5 or i == len(items):
            last = now
            rate = (made - first[1]) / (now - first[0]) if now > first[0] else made / max(now, 1e-9)
            log.info(
                "%s: %d/%d shards, %d/%d images, %.1f images/s, ETA %.0f s",
                what, i, len(items), made, total, rate, (total - made) / max(rate, 1e-9),
            )
    now = time.perf_counter() - start
    steady = (made - first[1]) / (now - first[0]) if first and now > first[0] and made > first[1] else None
    # start-up (actors loading the generator) vs steady-state throughput, for benchmarks
    return {
        "first_shard_s": round(first[0], 2) if first else None,
        **startup,  # process start + imports, and loading the generator (seconds)
        "steady_images_per_s": steady,
        "actors": [{"node": n, "gpu_ids": g} for n, g in sorted(placements)],
    }
