"""Pool generation with Ray Data: plan rows, ``map_batches`` over generator actors, store.

The plan has one row per synthetic image (reference, target class, strength, seed), so
the output is a pure function of the config: the same config gives the same pool.
Each actor builds and fits its generator once, then translates batches.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch

from raysynth.config import ConfigError, PoolConfig, fingerprint
from raysynth.data.base import FewShotSplit, ImageSet
from raysynth.generators.base import create_generator
from raysynth.generators.quality import quality_controlled_shots
from raysynth.pool import Pool, PoolStore, pool_key

log = logging.getLogger(__name__)


def plan_pool(shots: ImageSet, num_classes: int, config: PoolConfig, strength: float) -> pd.DataFrame:
    """One row per synthetic image. Diff-Mix draws the reference from another class,
    Diff-Aug from the target class itself."""
    rng = np.random.default_rng(config.seed)
    labels = shots.labels.numpy()
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    rows = []
    for target in range(num_classes):
        for _ in range(config.per_class):
            if config.mode == "mix":
                ref_class = int(rng.choice([c for c in range(num_classes) if c != target]))
            else:
                ref_class = target
            ref = int(rng.choice(by_class[ref_class]))
            rows.append((len(rows), ref, ref_class, target, strength))
    plan = pd.DataFrame(rows, columns=["id", "reference_index", "reference_class", "target_class", "strength"])
    # per-image seeds from the plan seed and the row id: stable under re-sharding
    plan["seed"] = [int(fingerprint(config.seed, i, length=8), 16) for i in plan["id"]]
    return plan


class TranslateBatch:
    """Ray Data callable class: fits the generator once per actor, translates batches."""

    def __init__(self, config: PoolConfig, num_classes: int, shots: ImageSet, learned: ImageSet):
        torch.set_num_threads(1)
        self.shots = shots
        self.generator = create_generator(config, num_classes)
        self.generator.fit(learned)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        refs = self.shots.images[torch.from_numpy(batch["reference_index"].astype(np.int64))]
        targets = torch.from_numpy(batch["target_class"].astype(np.int64))
        strength = float(batch["strength"][0])
        seeds = torch.from_numpy(batch["seed"].astype(np.int64))
        images, _ = self.generator.translate(refs, targets, strength, seeds)
        batch["image"] = (images * 255.0).round().to(torch.uint8).numpy()
        return batch


def generate_pool(
    split: FewShotSplit,
    config: PoolConfig,
    strength: float | None = None,
    store: PoolStore | None = None,
    batch_size: int = 64,
) -> tuple[str, bool]:
    """Make sure the pool for (split, config, strength) is in the store.

    Returns (key, generated): ``generated`` is False on a cache hit, when nothing runs.
    """
    import ray

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
    start = time.perf_counter()
    ds = ray.data.from_pandas(plan).repartition(max(1, config.actors * 2))
    ds = ds.map_batches(
        TranslateBatch,
        fn_constructor_kwargs=dict(config=config, num_classes=split.num_classes, shots=split.train, learned=learned),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=config.actors),
        # fractional CPUs: on a 2-core machine whole-CPU actors starve the read tasks
        num_cpus=0.5,
    )
    parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    ids = np.concatenate([p["id"] for p in parts])
    order = np.argsort(ids)
    images = np.concatenate([p["image"] for p in parts])[order]
    manifest = pd.concat([pd.DataFrame({k: v for k, v in p.items() if k != "image"}) for p in parts])
    manifest = manifest.iloc[order].reset_index(drop=True)
    seconds = time.perf_counter() - start
    meta = {
        "key": key,
        "split": split.fingerprint,
        "dataset": split.name,
        "classes": split.classes,
        "generator": config.generator,
        "mode": config.mode,
        "strength": strength,
        "quality": config.quality,
        "images": int(len(manifest)),
        "seconds": round(seconds, 2),
    }
    store.save(key, Pool(images, manifest, meta))
    log.info("pool %s: generated %d images in %.1f s (%.0f images/s)", key, len(manifest), seconds, len(manifest) / seconds)
    return key, True
