"""One trial's peak memory against the size of its synthetic pool.

CUB-shaped data through the real pool store: 200 classes at 224 px, cub.yaml's shots
(16), validation (4 per class) and the size of CUB's official test split (5,794); pools
of ``--per-class`` and 4x that many images per class (4 x 125 = cub.yaml's 500). The
pixels are random: what is measured is memory, not accuracy. One trial of cub.yaml —
ViT-B/16 (random weights, its text tower for the zero-shot head), LoRA r=16 on the
attention, batches of 32 real + 32 synthetic, ``--steps`` steps and then its validation
pass — runs in a fresh process at pool size P and at 4P, and reports its peak resident
memory (VmHWM; the pools are written by another process). Goal: ratio 4P/P <= 1.15, and the cub.yaml trial under 16 GiB.

    .venv/bin/python benchmarks/memory.py [--per-class 125] [--steps 2]

Disk: the two pools take about 19 GB (P = 125) in a temporary RAYSYNTH_HOME, removed at
the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLASSES, SIDE, SHOTS, VAL, TEST = 200, 224, 16, 4, 5794
SPACE = REPO / "search_spaces" / "cub.yaml"


def register_cub_shaped() -> None:
    """A dataset named ``cub-shaped``: CUB's split sizes and image size, random pixels
    (uint8, as the real loaders keep decoded images)."""
    import torch

    from raysynth.data import DATASETS
    from raysynth.data.base import DatasetEntry, FewShotSplit, ImageSet

    def load(config) -> FewShotSplit:
        g = torch.Generator().manual_seed(0)

        def part(per_class: int | None, total: int | None = None) -> ImageSet:
            n = total if total is not None else per_class * CLASSES
            # drawn straight into uint8 (no int64 intermediate to inflate the peak)
            images = torch.randint(0, 256, (n, 3, config.image_size, config.image_size), dtype=torch.uint8, generator=g)
            return ImageSet(images, torch.arange(n) % CLASSES)

        empty = ImageSet(torch.empty(0, 3, config.image_size, config.image_size, dtype=torch.uint8), torch.empty(0, dtype=torch.long))
        return FewShotSplit(
            name="cub-shaped", classes=[f"bird {c:03d}" for c in range(CLASSES)], base_classes=[], base=empty,
            train=part(SHOTS), val=part(config.val_per_class), test=part(None, TEST), metaclass="bird",
            fingerprint=f"cub-shaped-{config.image_size}-{config.val_per_class}",
        )

    if "cub-shaped" not in DATASETS:
        DATASETS.add("cub-shaped", DatasetEntry(load))


def trial_config(per_class: int, steps: int, checkpoint: str):
    from raysynth.validate import load_config

    return load_config(SPACE, [
        "dataset=cub-shaped", "data.root=null", f"data.image_size={SIDE}", f"data.val_per_class={VAL}",
        f"model.pretrained={checkpoint}",
        # the pool is written here directly; its generator and CLIP scorer are not run
        "pool.generator=morph", "pool.options={}", "pool.clip_model=null", "pool.clip_pretrained=null",
        f"pool.per_class={per_class}",
        "loss={ce: {real: 1.0, synthetic: 1.0}}", "search.space={}",
        "train.epochs=1", f"train.steps_per_epoch={steps}", "train.threads=2",
    ])


def write_pool(config, chunk: int = 2000) -> tuple[str, float]:
    """The pool a trial of ``config`` loads, written through the real store (shards in
    the pool's shard directory, as generation actors write them, then the store's
    manifest and meta.json); returns (key, GB on disk)."""
    import pandas as pd

    from raysynth.context import split_of
    from raysynth.pool import PoolStore, pool_key

    split = split_of(config)
    store = PoolStore()
    key = pool_key(split.fingerprint, config.pool)
    work = store.shard_dir(key)
    if store.exists(key):
        return key, sum(p.stat().st_size for p in work.glob("*.npy")) / 1e9
    import torch

    n = config.pool.per_class * CLASSES
    g = torch.Generator().manual_seed(1)
    work.mkdir(parents=True, exist_ok=True)
    shards = []
    for i, start in enumerate(range(0, n, chunk)):
        rows = np.arange(start, min(n, start + chunk))
        images = torch.randint(0, 256, (len(rows), 3, SIDE, SIDE), dtype=torch.uint8, generator=g).numpy()
        np.save(work / f"shard-{i:05d}.npy", images, allow_pickle=False)
        pd.DataFrame({
            "target_class": rows % CLASSES, "reference_class": (rows + 1) % CLASSES, "reference_index": rows % (SHOTS * CLASSES),
            "strength": np.full(len(rows), config.pool.strength, dtype=np.float32), "seed": rows, "shard": i,
        }).to_parquet(work / f"shard-{i:05d}.parquet", index=False)
        shards.append(f"shard-{i:05d}")
    store.finish(key, shards, {"key": key, "images": n, "dataset": "cub-shaped", "strength": config.pool.strength})
    return key, sum(p.stat().st_size for p in work.glob("*.npy")) / 1e9


def peak_rss_gib() -> float:
    """This process's peak resident memory since it started (VmHWM). Not ``ru_maxrss``:
    Linux carries the parent's high-water mark across fork + exec into it."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_trial(per_class: int, steps: int, checkpoint: str) -> dict:
    """One trial in this process; its peak RSS (the measured process)."""
    from raysynth.prepare import prepare
    from raysynth.train.session import train_in_process

    config = trial_config(per_class, steps, checkpoint)
    context = prepare(config)  # the pool written above and the checkpoint: found, nothing made
    start = time.perf_counter()
    result, _ = train_in_process(config, [1.0] * CLASSES, context, report=lambda m: print(f"  trial: {m}", flush=True))
    return {
        "per_class": per_class, "peak_rss_gib": peak_rss_gib(),
        "val_acc": result.metrics.val_acc, "seconds": round(time.perf_counter() - start, 1),
    }


def _child(args: list[str]) -> dict:
    """Run this script with ``args`` in a fresh process; its RESULT line."""
    out = subprocess.run([sys.executable, __file__, *args], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=125, help="synthetic images per class at size P (4P is measured too)")
    parser.add_argument("--steps", type=int, default=2, help="optimiser steps of the trial (then its validation pass)")
    parser.add_argument("--trial", type=int, help=argparse.SUPPRESS)  # internal: run one trial at this per-class count
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--write-pool", type=int, help=argparse.SUPPRESS)  # internal: write the pool of this per-class count
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    register_cub_shaped()
    if args.write_pool is not None:
        key, gb = write_pool(trial_config(args.write_pool, args.steps, args.checkpoint))
        print("RESULT " + json.dumps({"key": key, "gb": gb}), flush=True)
        return
    if args.trial is not None:
        print("RESULT " + json.dumps(run_trial(args.trial, args.steps, args.checkpoint)), flush=True)
        return

    import torch

    from raysynth.models.backbone import create_model

    home = Path(tempfile.mkdtemp(prefix="raysynth-memory-"))
    os.environ["RAYSYNTH_HOME"] = str(home)
    try:
        checkpoint = home / "vit-b-16-random.pt"
        torch.manual_seed(0)
        torch.save(create_model("ViT-B-16").state_dict(), checkpoint)
        results = []
        for per_class in (args.per_class, 4 * args.per_class):
            start = time.perf_counter()
            written = _child(["--write-pool", str(per_class), "--steps", str(args.steps), "--checkpoint", str(checkpoint)])
            key, gb = written["key"], written["gb"]
            print(f"pool of {per_class * CLASSES} images ({per_class}/class, {SIDE} px): {gb:.1f} GB on disk, written in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            result = _child(["--trial", str(per_class), "--steps", str(args.steps), "--checkpoint", str(checkpoint)])
            results.append(result)
            print(f"  one trial, pool {per_class}/class: peak RSS {result['peak_rss_gib']:.2f} GiB ({result['seconds']} s)", flush=True)
            shutil.rmtree(Path(home) / "pools" / key, ignore_errors=True)
        small, large = results
        ratio = large["peak_rss_gib"] / small["peak_rss_gib"]
        print(f"\npeak RSS of one cub.yaml trial: P ({small['per_class']}/class) {small['peak_rss_gib']:.2f} GiB, "
              f"4P ({large['per_class']}/class) {large['peak_rss_gib']:.2f} GiB")
        print(f"ratio 4P / P: {ratio:.3f}  (goal <= 1.15: {'met' if ratio <= 1.15 else 'NOT met'})")
        at = large if large["per_class"] == 500 else None
        if at is not None:
            print(f"cub.yaml's pool (500/class): {at['peak_rss_gib']:.2f} GiB  (goal < 16 GiB: {'met' if at['peak_rss_gib'] < 16 else 'NOT met'})")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
