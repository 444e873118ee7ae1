"""Generation throughput of the sharded Ray Data pipeline, measured in one run.

CPU part (any machine), the ``ddpm`` backend (CPU-bound, one torch thread per actor):

1. One pool of the demo's size (``--per-class 64``: 320 images) with 1 and then 2
   actors: images/s end to end (start-up included) and steady (after the first shard),
   and each ratio — goal >= 1.6 on 2 cores — with the actors' start-up (process start and
   imports; loading the generator) printed beside it.
2. A search over three strengths (``--strengths``), as ``raysynth prepare`` generates it:
   one pipeline run for all three pools (the actors start once) vs one run per strength
   (the old way), at 2 actors; and the end-to-end ratio 2 actors / 1 actor of the one run.
3. The same pool asked for again with a warm cache: goal, no generation (a file check).

Stable Diffusion img2img on GPUs, through the pipeline vs a plain diffusers loop:
``benchmarks/gpu.py``.

    .venv/bin/python benchmarks/generation.py [--per-class 64] [--strengths 0.5 0.7 0.9]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_run(split, pool, strengths, store, actors: int) -> dict:
    """Generate the pools of ``strengths`` in one run (from an empty store's pools; the
    fitted generator stays cached) and return its wall time and the run's timing meta."""
    import dataclasses

    from raysynth.pool.pipeline import generate_strengths

    pool = dataclasses.replace(pool, actors=actors)
    start = time.perf_counter()
    pools = generate_strengths(split, pool, strengths, store=store)
    wall = time.perf_counter() - start
    assert all(made for _, made in pools.values()), "a pool was cached: the timing would be of nothing"
    metas = [store.load(key).meta for key, _ in pools.values()]
    for key, _ in pools.values():
        shutil.rmtree(store.path(key))  # the next run generates again
    return {"wall": wall, "images": sum(m["images"] for m in metas), **metas[0]}


def row(label: str, run: dict) -> str:
    return (f"| {label} | {run['wall']:.1f} | {run['images'] / run['wall']:.1f} | {run['steady_images_per_s']:.1f} | "
            f"{run['first_shard_s']:.1f} | {run['actor_start_s']:.1f} | {run['actor_load_s']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=64, help="images per class and pool (5 classes; the demo's 64)")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    parser.add_argument("--inference-steps", type=int, default=20)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="raysynth-bench-"))
    os.environ["RAYSYNTH_HOME"] = str(home)
    import logging

    import ray

    from raysynth.context import split_of
    from raysynth.logs import setup_logging
    from raysynth.pool import PoolStore
    from raysynth.pool.pipeline import generate_pool
    from raysynth.validate import load_config

    setup_logging()
    logging.getLogger("raysynth").setLevel(logging.WARNING)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    overrides = [
        "pool.generator=ddpm",
        "pool.options.train_steps=50",  # throughput does not depend on how well it is trained
        f"pool.options.inference_steps={args.inference_steps}",
        f"pool.per_class={args.per_class}",
        "pool.shard_size=16",
        "pool.strength=0.9",
    ]
    store = PoolStore(home / "pools")
    config = load_config(REPO / "search_spaces" / "digits.yaml", overrides)
    split = split_of(config)
    # fit the generator once, outside the timings (its cache key does not include the pool size)
    warmup = load_config(REPO / "search_spaces" / "digits.yaml", overrides + ["pool.per_class=1", "pool.seed=99"])
    generate_pool(split_of(warmup), warmup.pool, store=store)

    one = {actors: timed_run(split, config.pool, [0.9], store, actors) for actors in (1, 2)}
    per_strength = [timed_run(split, config.pool, [s], store, 2) for s in args.strengths]
    together = {actors: timed_run(split, config.pool, args.strengths, store, actors) for actors in (1, 2)}
    generate_pool(split, config.pool, store=store)
    start = time.perf_counter()
    _, generated = generate_pool(split, config.pool, store=store)
    warm = time.perf_counter() - start

    cores = os.cpu_count()
    print(f"\nGeneration, ddpm backend on CPU ({cores} cores), {args.inference_steps} DDIM steps, pools of {one[1]['images']} images")
    print("| run | wall s | images/s end to end | images/s steady | first shard s | actor start s | generator load s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(row("1 pool, 1 actor", one[1]))
    print(row("1 pool, 2 actors", one[2]))
    for s, run in zip(args.strengths, per_strength):
        print(row(f"strength {s} alone, 2 actors", run))
    print(row(f"{len(args.strengths)} strengths in one run, 1 actor", together[1]))
    print(row(f"{len(args.strengths)} strengths in one run, 2 actors", together[2]))
    e2e = lambda runs: (runs[2]["images"] / runs[2]["wall"]) / (runs[1]["images"] / runs[1]["wall"])  # noqa: E731
    print(f"one pool: ratio 2 actors / 1 actor end to end {e2e(one):.2f}, steady "
          f"{one[2]['steady_images_per_s'] / one[1]['steady_images_per_s']:.2f} (goal >= 1.6)")
    separate = sum(r["wall"] for r in per_strength)
    print(f"{len(args.strengths)} strengths at 2 actors: one run {together[2]['wall']:.1f} s vs one run per strength "
          f"{separate:.1f} s ({separate / together[2]['wall']:.2f}x faster); end-to-end ratio 2 actors / 1 actor "
          f"{e2e(together):.2f} (goal >= 1.6)")
    print(f"warm re-run: {warm * 1000:.0f} ms, generated={generated} (goal: no generation)")

    ray.shutdown()
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
