"""Pool generation with Ray Data: plan, shard, generate on an actor pool, assemble.

1. **Plan.** One row per synthetic image (id, reference, target class, strength, seed).
   The plan and the per-image seeds are a pure function of the config, so the same
   config gives the same pool on any number of actors.
2. **Shards.** Rows are cut into shards of ``pool.shard_size`` images; a shard is the
   unit of work and of resumption (:mod:`raysynth.pool.shards`). A killed run, re-run,
   generates only the shards that are missing.
3. **Actors.** ``map_batches`` over the shard ids with ``ActorPoolStrategy(size=N)``: each
   actor loads the generator once (a trainable backend is fitted once beforehand by a
   Ray task and saved as safetensors) and the CLIP scorer if one is configured.
   Each actor asks for ``resources.generation`` (``gpu: auto``: a GPU when the cluster has
   or can add GPU nodes); CPU actors by default take a fraction of a CPU so
   that Ray Data's own tasks still get scheduled (a pool that takes every CPU hangs).
4. **Assemble.** The shards are concatenated into the pool store's final layout
   (``images.npy``, ``manifest.parquet``, ``meta.json``) in a temporary directory that is
   renamed into place; then the work directory is removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import warnings
from pathlib import Path

import torch

from raysynth.atomic import atomic_directory
from raysynth.cluster import ray_options, resources_of, wait_for_resources, work_device
from raysynth.config import Config, ConfigError, PoolConfig
from raysynth.data.base import FewShotSplit, ImageSet
from raysynth.generators import GENERATORS, create_generator
from raysynth.generators.quality import quality_controlled_shots
from raysynth.home import adopt_home, fingerprint, home_env, publish, published, remote_twin
from raysynth.logs import setup_logging
from raysynth.pool.shards import GenerateShards, fetch_shards, finished_shards, plan_pool, shard_name, to_uint8
from raysynth.pool.store import PoolStore, pool_key
from raysynth.storage import remove

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


def pool_options(config: Config) -> dict:
    """The keyword arguments of :func:`generate_pool` a whole config decides: what each
    actor asks for, and how long the actors may wait for it."""
    return {"resources": actor_resources(config), "wait_s": config.search.resource_wait_s}


def generate_pool(
    split: FewShotSplit,
    config: PoolConfig,
    strength: float | None = None,
    store: PoolStore | None = None,
    resources: dict[str, float] | None = None,
    wait_s: float = 0.0,
) -> tuple[str, bool]:
    """Make sure the pool for (split, config, strength) is in the store.

    ``resources``: of one actor, as Ray options (default: ``resources.generation``'s
    defaults); the actors wait at most ``wait_s`` seconds for them (0: forever).

    Returns (key, generated): ``generated`` is False on a cache hit, when nothing runs.
    An interrupted earlier run's finished shards are kept and not generated again.
    """

    store = store or PoolStore()
    strength = config.strength if strength is None else strength
    key = pool_key(split.fingerprint, config, strength)
    if store.exists(key):
        log.info("pool %s: cache hit (%s)", key, store.path(key))
        return key, False

    if config.learn_from == "prior" and split.prior is None:
        raise ConfigError(f"pool.learn_from: dataset '{split.name}' has no prior images; use 'shots'")
    source = split.prior if config.learn_from == "prior" else split.train
    learned = quality_controlled_shots(source, split.classes, config.quality)
    plan = plan_pool(split.train, split.num_classes, config, strength)
    shards = sorted(plan["shard"].unique().tolist())
    work = store.work_path(key)
    work.mkdir(parents=True, exist_ok=True)
    remote_work = remote_twin(work)  # a remote home: actors upload their shards there
    if remote_work is not None:
        fetch_shards(work, remote_work)
    done = finished_shards(work)
    todo = [s for s in shards if s not in done]
    if done:
        log.info("pool %s: resuming, %d of %d shards already finished", key, len(done), len(shards))

    start = time.perf_counter()
    if todo:
        resources = resources or actor_resources(Config(pool=config))
        fitted = None
        if GENERATORS[config.generator].trainable:
            fitted, _ = ensure_fitted(split, config, learned, store, resources["num_gpus"] > 0)
        timing = _run_actors(plan, config, split, learned, fitted, work, remote_work, todo, resources, key, wait_s)
    else:
        timing = {}
    if remote_work is not None:
        fetch_shards(work, remote_work)
    missing = sorted(set(shards) - finished_shards(work))
    if missing:
        raise RuntimeError(f"pool {key}: shards {missing[:5]} were not written")
    seconds = time.perf_counter() - start
    meta = {
        "key": key,
        "split": split.fingerprint,
        "dataset": split.name,
        "classes": split.classes,
        "generator": GENERATORS[config.generator].config_key(config),
        "mode": config.mode,
        "strength": strength,
        "strengths": config.strengths,  # per-image strengths drawn from this set (when set)
        "quality": config.quality,
        "clip_model": config.clip_model,
        "images": int(len(plan)),
        "shards": len(shards),
        "generated_shards": len(todo),
        "seconds": round(seconds, 2),
        **timing,
    }
    store.assemble(key, [work / shard_name(s) for s in shards], meta)
    shutil.rmtree(work, ignore_errors=True)
    if remote_work is not None:
        remove(remote_work)
    n = int(plan["shard"].isin(todo).sum())
    log.info("pool %s: %d images generated in %.1f s (%.1f images/s)", key, n, seconds, n / max(seconds, 1e-9))
    return key, True


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

    bundle = {"CPU": resources["num_cpus"], "GPU": resources.get("num_gpus", 0.0), "memory": resources.get("memory", 0.0)}
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


def _run_actors(plan, config, split, learned, fitted, work, remote_work, todo, resources, key, wait_s) -> dict:
    actors = max(1, min(config.actors, len(todo)))
    with reserved(actors, resources, wait_s):
        return _iterate(plan, config, split, learned, fitted, work, remote_work, todo, resources, key, actors)


def _iterate(plan, config, split, learned, fitted, work, remote_work, todo, resources, key, actors) -> dict:
    import ray

    ds = ray.data.from_items([{"shard": s} for s in todo], override_num_blocks=len(todo))
    ds = ds.map_batches(
        GenerateShards,
        fn_constructor_kwargs=dict(
            plan=plan,
            config=config,
            classes=split.classes,
            metaclass=split.metaclass,
            references=to_uint8(split.train.images),
            learned=None if fitted is not None else learned,
            fitted=None if fitted is None else str(fitted),
            work=str(work),
            threads=max(1, int(resources["num_cpus"])),
            remote_work=remote_work,
            home=home_env(),
        ),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        **resources,
    )
    total = int(plan["shard"].isin(todo).sum())
    log.info("pool %s: %d shards (%d images) on %d actor(s) with %s each", key, len(todo), total, actors, resources)
    made, start, last = 0, time.perf_counter(), 0.0
    first = None  # (time, images) at the first finished shard: the rate excludes actor start-up
    placements = set()  # (node, GPU ids) of the actors that generated
    for i, row in enumerate(ds.iter_rows(), 1):
        made += int(row["images"])
        placements.add((str(row["node"]), str(row["gpu_ids"])))
        now = time.perf_counter() - start
        if first is None:
            first = (now, made)
        if i == 1 and len(todo) > 1:
            log.info("pool %s: first shard after %.1f s (actors start and load the generator)", key, now)
        elif now - last > 5 or i == len(todo):
            last = now
            rate = (made - first[1]) / (now - first[0]) if now > first[0] else made / max(now, 1e-9)
            log.info(
                "pool %s: %d/%d shards, %d/%d images, %.1f images/s, ETA %.0f s",
                key, i, len(todo), made, total, rate, (total - made) / max(rate, 1e-9),
            )
    now = time.perf_counter() - start
    steady = (made - first[1]) / (now - first[0]) if first and now > first[0] and made > first[1] else None
    # start-up (actors loading the generator) vs steady-state throughput, for benchmarks
    return {
        "first_shard_s": round(first[0], 2) if first else None,
        "steady_images_per_s": steady,
        "actors": [{"node": n, "gpu_ids": g} for n, g in sorted(placements)],
    }
