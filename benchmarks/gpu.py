"""GPU figures, measured in one run on a CUDA machine; a clear exit without CUDA.

1. **Training.** LoRA ViT-B/16 (open_clip, random init: throughput does not depend on
   the weights; 224 px, r=16 on the fused attention) through raysynth's ``train_few_shot``
   (the classifier's bf16 autocast and channels-last inputs on CUDA; augmentation,
   Diff-Mix soft labels, the objective registry, a validation pass) vs a plain open_clip
   forward/backward/AdamW loop in bf16 autocast on the same images. Goal: ratio >= 0.9.
2. **Generation.** Stable Diffusion img2img (``pool.generator: stable_diffusion``, s=0.7)
   through raysynth's Ray Data pipeline (one actor per GPU with cub.yaml's 2 CPUs and
   shards of 64) vs a plain single-process
   diffusers loop with the same rows, scheduler, steps, guidance, dtype and batch size.
   Images/s per GPU, steady (after the first shard) and end to end. Goal: steady ratio
   >= 0.9. ``--sd-model``: a hub id in the local cache or a diffusers directory; without
   one, a tiny random pipeline built from configs (raysynth.testing.tiny_sd, 64 px).

    .venv/bin/python benchmarks/gpu.py [--steps 100] [--batch 32] [--sd-model DIR] [--sd-images N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark below


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--steps", type=int, default=100, help="timed training steps (after a warm-up step; ~5 s on an H100)")
    parser.add_argument("--batch", type=int, default=32, help="images per step (half real, half synthetic)")
    parser.add_argument("--sd-model", help="Stable Diffusion (hub id in the local cache, or a diffusers directory)")
    parser.add_argument("--sd-images", type=int, help="images generated (default 128; 640 for the tiny stand-in, whose "
                        "shards are fast: a steady rate needs many)")
    parser.add_argument("--sd-steps", type=int, default=25)
    parser.add_argument("--skip", choices=("train", "generation"), action="append", default=[])
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: needs a CUDA GPU, and torch sees none "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); run it on a GPU node", file=sys.stderr)
        raise SystemExit(2)
    name = torch.cuda.get_device_name(0)
    print(f"{name}, torch {torch.__version__}, {torch.cuda.device_count()} GPU(s)", flush=True)
    if "train" not in args.skip:
        training(args)
    if "generation" not in args.skip:
        generation(args)


def training(args) -> None:
    import torch
    from train_throughput import measure

    plain, ours = measure(args.model, args.steps, args.batch, 224, "cuda", plain_bf16=True)
    half = args.batch // 2
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"\nTraining: {args.model} LoRA r=16, 224 px, batch {args.batch} ({half} real + {half} synthetic), {args.steps} steps")
    print(f"plain open_clip loop (bf16 autocast): {plain:.1f} images/s")
    print(f"raysynth train_few_shot (bf16 autocast): {ours:.1f} images/s; peak GPU memory {peak:.1f} GiB")
    print(f"ratio raysynth / plain: {ours / plain:.2f} (goal >= 0.9)", flush=True)


def generation(args) -> None:
    import ray
    import torch

    home = Path(tempfile.mkdtemp(prefix="raysynth-gpu-bench-"))
    os.environ["RAYSYNTH_HOME"] = str(home)
    from raysynth.context import split_of
    from raysynth.pool import PoolStore
    from raysynth.pool.pipeline import generate_pool
    from raysynth.validate import load_config

    model, resolution = args.sd_model, 512
    if model is None:
        from raysynth.testing.tiny_sd import build_tiny_stable_diffusion

        model, resolution = str(build_tiny_stable_diffusion(home / "tiny-sd")), 64
        print("\nno --sd-model: a tiny random Stable Diffusion (64 px) stands in", flush=True)
    images = args.sd_images or (128 if args.sd_model else 640)
    gpus = torch.cuda.device_count()
    split0 = split_of(load_config(REPO / "search_spaces" / "digits.yaml", []))
    per_class = max(1, images // split0.num_classes)
    overrides = [
        "pool.generator=stable_diffusion", f"pool.options.model={model}", f"pool.options.steps={args.sd_steps}",
        f"pool.options.resolution={resolution}", "pool.options.batch_size=8", "pool.strength=0.7",
        f"pool.per_class={per_class}", "pool.shard_size=64", f"pool.actors={gpus}",
    ]
    config = load_config(REPO / "search_spaces" / "digits.yaml", overrides)
    split = split_of(config)
    store = PoolStore(home / "pools")
    ray.init(include_dashboard=False, log_to_driver=False)
    start = time.perf_counter()
    key, _ = generate_pool(split, config.pool, store=store, resources={"num_cpus": 2, "num_gpus": 1}, wait_s=120)
    wall = time.perf_counter() - start
    meta = store.load(key).meta
    ray.shutdown()
    plain = plain_diffusers(config, split)
    steady = (meta["steady_images_per_s"] or meta["images"] / wall) / max(gpus, 1)  # one shard: no steady state
    print(f"\nGeneration: SD img2img {resolution} px, {args.sd_steps} steps, s=0.7, {meta['images']} images, {gpus} GPU(s)")
    print(f"raysynth pipeline: {steady:.2f} images/s per GPU steady, {meta['images'] / wall:.2f} end to end "
          f"(actor start {meta['actor_start_s']:.1f} s, pipeline load {meta['actor_load_s']:.1f} s)")
    print(f"plain diffusers loop: {plain:.2f} images/s; ratio steady {steady / plain:.2f} (goal >= 0.9)")


def plain_diffusers(config, split) -> float:
    """Images/s of one diffusers img2img pipeline in this process over the same rows as
    the pool (the backend's scheduler, steps, guidance, dtype and batch size)."""
    import diffusers
    import torch
    import torch.nn.functional as F

    from raysynth.data.base import float_images
    from raysynth.generators import create_generator
    from raysynth.generators.backends.stable_diffusion import SCHEDULERS
    from raysynth.pool.shards import plan_pool

    backend = create_generator(config.pool, split.classes, split.metaclass, "cuda")  # its options and prompts; loads nothing
    params = backend.params
    plan = plan_pool(split.train, split.num_classes, config.pool, config.pool.strength)
    pipe = diffusers.StableDiffusionImg2ImgPipeline.from_pretrained(params.model, torch_dtype=torch.float16, safety_checker=None)
    pipe.scheduler = getattr(diffusers, SCHEDULERS[params.scheduler]).from_config(pipe.scheduler.config)
    pipe = pipe.to("cuda")
    pipe.set_progress_bar_config(disable=True)
    size = params.resolution
    refs = F.interpolate(float_images(split.train.images), size=(size, size), mode="bicubic").clamp(0, 1).half()
    prompts = [backend.prompt(c) for c in range(split.num_classes)]

    def batch(rows):
        pipe(
            prompt=[prompts[int(c)] for c in rows["target_class"]],
            image=refs[rows["reference_index"].to_numpy()].cuda(),
            strength=config.pool.strength, num_inference_steps=params.steps, guidance_scale=params.guidance,
            generator=[torch.Generator("cuda").manual_seed(int(s)) for s in rows["seed"]], output_type="pt",
        )

    b = params.batch_size
    batch(plan.iloc[:b])  # warm-up (kernels, allocator), as the pipeline's first shard
    torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(b, len(plan), b):
        batch(plan.iloc[i : i + b])
    torch.cuda.synchronize()
    return (len(plan) - b) / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
