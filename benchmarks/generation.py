"""Generation throughput of the sharded Ray Data pipeline, measured in one run.

CPU part (any machine): the ``ddpm`` backend (CPU-bound, one torch thread per actor)
generates the same pool with 1 actor and then with 2 actors; prints images/s of each
(end to end, and steady state after the first shard, i.e. without actor start-up) and
the ratio — goal >= 1.6 on 2 cores. Then the same pool is asked for again with a warm
cache: goal, no generation at all (generated=False, a file check).

GPU part (``--sd-model PATH_OR_ID``, on a GPU machine with the weights): images/s per GPU
of Stable Diffusion img2img at 512 px, 25 steps, strength 0.7 through raysynth's
pipeline vs a plain single-process diffusers loop on the same rows (goal >= 0.9x).

    .venv/bin/python benchmarks/generation.py [--per-class 128] [--sd-model ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=128, help="images per class (5 classes)")
    parser.add_argument("--inference-steps", type=int, default=20)
    parser.add_argument("--sd-model", help="Stable Diffusion for the GPU comparison")
    parser.add_argument("--sd-images", type=int, default=64)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="raysynth-bench-"))
    os.environ["RAYSYNTH_HOME"] = str(home)
    import logging

    import ray

    from raysynth.data import cached_split
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
    # fit the generator once, outside the timings (its cache key does not include the pool size)
    warmup = load_config(REPO / "search_spaces" / "digits.yaml", overrides + ["pool.per_class=1", "pool.seed=99"])
    generate_pool(cached_split(warmup), warmup.pool, store=store)
    rows = {}
    for actors in (1, 2):
        config = load_config(REPO / "search_spaces" / "digits.yaml", overrides + [f"pool.actors={actors}"])
        split = cached_split(config)
        start = time.perf_counter()
        key, generated = generate_pool(split, config.pool, store=store)
        wall = time.perf_counter() - start
        meta = store.load(key).meta
        rows[actors] = (meta["images"] / wall, meta["steady_images_per_s"], meta["first_shard_s"], wall)
        if actors == 1:
            shutil.rmtree(store.path(key))  # generate again (the fitted generator stays cached)
    start = time.perf_counter()
    _, generated = generate_pool(split, config.pool, store=store)
    warm = time.perf_counter() - start

    print(f"\nGeneration, ddpm backend on CPU ({os.cpu_count()} cores), {meta['images']} images, {args.inference_steps} DDIM steps, s=0.9")
    print("| actors | wall s | images/s end to end | images/s steady | first shard s |")
    print("|-------:|-------:|--------------------:|----------------:|--------------:|")
    for actors, (e2e, steady, first, wall) in rows.items():
        print(f"| {actors} | {wall:.1f} | {e2e:.1f} | {steady:.1f} | {first:.1f} |")
    print(f"ratio 2 actors / 1 actor: end to end {rows[2][0] / rows[1][0]:.2f}, steady {rows[2][1] / rows[1][1]:.2f} (goal >= 1.6)")
    print(f"warm re-run: {warm * 1000:.0f} ms, generated={generated} (goal: no generation)")

    if args.sd_model:
        sd_comparison(args, split, store)
    ray.shutdown()
    shutil.rmtree(home, ignore_errors=True)


def sd_comparison(args, split, store) -> None:
    """SD img2img, 512 px, 25 steps, s=0.7: raysynth pipeline vs a plain diffusers loop."""
    import torch
    from diffusers import StableDiffusionImg2ImgPipeline

    from raysynth.data.base import float_images
    from raysynth.generators.backends.stable_diffusion import StableDiffusionGenerator
    from raysynth.pool.pipeline import generate_pool
    from raysynth.pool.shards import plan_pool
    from raysynth.validate import load_config

    per_class = max(1, args.sd_images // split.num_classes)
    overrides = [
        "pool.generator=stable_diffusion", f"pool.options.model={args.sd_model}", "pool.options.steps=25",
        "pool.options.resolution=512", "pool.options.batch_size=8", "pool.strength=0.7", f"pool.per_class={per_class}",
        "pool.shard_size=32", "data.image_size=512",
    ]
    config = load_config(REPO / "search_spaces" / "digits.yaml", overrides)
    from raysynth.data import cached_split

    split = cached_split(config)
    gpus = int(torch.cuda.device_count())
    start = time.perf_counter()
    key, _ = generate_pool(split, config.pool, store=store)
    ours = store.load(key).meta
    ours_wall = time.perf_counter() - start

    # the plain loop: one process, one pipeline, the same rows and batch size
    plan = plan_pool(split.train, split.num_classes, config.pool, 0.7)
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(args.sd_model, torch_dtype=torch.float16, safety_checker=None).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    gen = StableDiffusionGenerator(config.pool, split.classes, split.metaclass, "cuda")
    refs = torch.nn.functional.interpolate(float_images(split.train.images), size=(512, 512), mode="bicubic").clamp(0, 1).half()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(0, len(plan), 8):
        rows = plan.iloc[i : i + 8]
        pipe(
            prompt=[gen.prompt(int(c)) for c in rows["target_class"]],
            image=refs[rows["reference_index"].to_numpy()].cuda(),
            strength=0.7, num_inference_steps=25, guidance_scale=7.5,
            generator=[torch.Generator("cuda").manual_seed(int(s)) for s in rows["seed"]], output_type="pt",
        )
    torch.cuda.synchronize()
    plain = len(plan) / (time.perf_counter() - start)
    steady = ours["steady_images_per_s"] / max(gpus, 1)
    print(f"\nSD img2img 512 px, 25 steps, s=0.7, {len(plan)} images, {gpus} GPU(s)")
    print(f"raysynth: {steady:.2f} images/s per GPU steady ({len(plan) / ours_wall:.2f} end to end incl. start-up)")
    print(f"plain diffusers loop: {plain:.2f} images/s; ratio {steady / plain:.2f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
