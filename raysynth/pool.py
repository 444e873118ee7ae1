"""Content-addressed store of synthetic pools under ``RAYSYNTH_HOME/pools``.

A pool's key hashes exactly the inputs that change its images: the dataset split, the
generator and its config, the strength, the quality map, the plan seed and size. The
soft-label exponent gamma is *not* in the key — labels are computed at load time — so
a search over gamma reuses one pool. Pools are written to a temporary directory and
renamed into place, so a crash never leaves a half-written pool behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from raysynth.config import PoolConfig, fingerprint, raysynth_home
from raysynth.generators.base import GENERATORS
from raysynth.generators.labels import diffmix_soft_labels


def pool_key(split_fingerprint: str, config: PoolConfig, strength: float | None = None) -> str:
    return fingerprint(
        "pool-v1",
        split_fingerprint,
        config.generator,
        GENERATORS[config.generator].version,
        config.mode,
        config.per_class,
        float(config.strength if strength is None else strength),
        sorted(config.quality.items()),
        config.learn_from,
        config.seed,
    )


@dataclass
class Pool:
    """Synthetic images (uint8, N x 3 x H x W) and their manifest (one row per image)."""

    images: np.ndarray
    manifest: pd.DataFrame
    meta: dict

    def __len__(self) -> int:
        return len(self.manifest)

    def tensors(self, gamma: float, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images float in [0,1], Diff-Mix soft labels, target class) for training."""
        images = torch.from_numpy(np.array(self.images)).float() / 255.0
        target = torch.tensor(self.manifest["target_class"].to_numpy(np.int64))
        reference = torch.tensor(self.manifest["reference_class"].to_numpy(np.int64))
        strength = torch.tensor(self.manifest["strength"].to_numpy(np.float32))
        return images, diffmix_soft_labels(target, reference, strength, gamma, num_classes), target


class PoolStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else raysynth_home() / "pools"

    def path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        return (self.path(key) / "meta.json").is_file()

    def load(self, key: str) -> Pool:
        path = self.path(key)
        images = np.load(path / "images.npy")
        manifest = pd.read_parquet(path / "manifest.parquet")
        meta = json.loads((path / "meta.json").read_text())
        return Pool(images, manifest, meta)

    def save(self, key: str, pool: Pool) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(key)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
        try:
            np.save(tmp / "images.npy", pool.images)
            pool.manifest.to_parquet(tmp / "manifest.parquet", index=False)
            # meta.json last: its presence marks a complete pool
            (tmp / "meta.json").write_text(json.dumps(pool.meta, indent=2, sort_keys=True))
            if final.exists():  # a concurrent writer got there first; both are identical
                shutil.rmtree(tmp)
            else:
                os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final
