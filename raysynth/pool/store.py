"""Content-addressed store of synthetic pools under ``RAYSYNTH_HOME/pools``.

With a remote home (``s3://...``) the store lives in the object store; each node keeps a
local copy of the pools it reads (fetched whole on first use, then memory-mapped).

A pool's key hashes exactly the inputs that change its images: the dataset split, the
generator and its config, the strength, the quality map, the plan seed and size. The
soft-label exponent gamma is *not* in the key — labels are computed at load time — so
a search over gamma reuses one pool. Pools are written to a temporary directory and
renamed into place, so a crash never leaves a half-written pool behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from raysynth.atomic import atomic_directory
from raysynth.config import PoolConfig
from raysynth.generators import GENERATORS
from raysynth.home import fetch, fingerprint, publish, published, raysynth_home
from raysynth.pool.filters import keep_mask
from raysynth.pool.labels import diffmix_soft_labels


def pool_key(split_fingerprint: str, config: PoolConfig, strength: float | None = None) -> str:
    return fingerprint(
        "pool-v2",
        split_fingerprint,
        GENERATORS[config.generator].config_key(config),
        config.mode,
        config.per_class,
        float(config.strength if strength is None else strength),
        sorted(config.quality.items()),
        config.learn_from,
        config.seed,
        config.clip_model,
        config.clip_pretrained,
        # per-image strengths only when set: the keys of existing pools stay valid
        *([("strengths", sorted(float(s) for s in config.strengths))] if config.strengths else []),
        # shard_size and actors are not in the key: they change how, not what, is generated
    )


class MappedImages:
    """The rows ``rows`` of a memory-mapped uint8 image array (N x 3 x H x W), read when
    indexed: a trial holds the rows of its batches, not the pool, so its memory does not
    grow with the pool. Indexing (an index tensor or array, a slice, a boolean mask) gives
    a uint8 tensor; the training loop makes each batch float on its device."""

    def __init__(self, array: np.ndarray, rows: np.ndarray):
        self.array, self.rows = array, np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.array.shape[1:])

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, torch.Tensor):
            index = index.numpy()
        rows = self.rows[index]
        if np.ndim(rows) == 0:
            rows = rows[None]
        return torch.from_numpy(np.ascontiguousarray(self.array[rows]))


@dataclass
class Pool:
    """Synthetic images (uint8, N x 3 x H x W) and their manifest (one row per image)."""

    images: np.ndarray
    manifest: pd.DataFrame
    meta: dict

    def __len__(self) -> int:
        return len(self.manifest)

    def tensors(
        self, gamma: float, num_classes: int, filter: str = "none", fraction: float = 0.2
    ) -> tuple[MappedImages, torch.Tensor, torch.Tensor]:
        """(the images, read on demand as uint8; Diff-Mix soft labels; target class) for
        training, after the CLIP filter rule (see :mod:`raysynth.pool.filters`)."""
        keep = np.flatnonzero(keep_mask(self.manifest, filter, fraction))
        manifest = self.manifest.iloc[keep]
        images = MappedImages(self.images, keep)
        target = torch.tensor(manifest["target_class"].to_numpy(np.int64))
        reference = torch.tensor(manifest["reference_class"].to_numpy(np.int64))
        strength = torch.tensor(manifest["strength"].to_numpy(np.float32))
        return images, diffmix_soft_labels(target, reference, strength, gamma, num_classes), target


class PoolStore:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else raysynth_home() / "pools"

    def path(self, key: str) -> Path:
        return self.root / key

    def exists(self, key: str) -> bool:
        """Whether the pool is complete here or in a remote home (not copied yet)."""
        return (self.path(key) / "meta.json").is_file() or published(self.path(key), directory=True)

    def work_path(self, key: str) -> Path:
        """Where an unfinished generation keeps its finished shards."""
        return self.root / f".work-{key}"

    def load(self, key: str) -> Pool:
        path = self.path(key)
        fetch(path, directory=True)  # a remote home's pool: copied to this node once, then mapped
        # memory-mapped: a trial reads the rows it keeps, not the whole pool
        images = np.load(path / "images.npy", mmap_mode="r", allow_pickle=False)
        manifest = pd.read_parquet(path / "manifest.parquet")
        meta = json.loads((path / "meta.json").read_text())
        return Pool(images, manifest, meta)

    def save(self, key: str, pool: Pool) -> Path:
        def write(tmp: Path) -> None:
            np.save(tmp / "images.npy", np.asarray(pool.images), allow_pickle=False)
            pool.manifest.to_parquet(tmp / "manifest.parquet", index=False)

        return self._commit(key, write, pool.meta)

    def assemble(self, key: str, shards: list[Path], meta: dict) -> Path:
        """Concatenate shards (``<stem>.npy`` + ``<stem>.parquet``, in order) into a pool,
        streaming the images through a memory map (the pool need not fit in memory)."""

        def write(tmp: Path) -> None:
            manifests = [pd.read_parquet(s.with_suffix(".parquet")) for s in shards]
            first = np.load(shards[0].with_suffix(".npy"), mmap_mode="r", allow_pickle=False)
            total = sum(len(m) for m in manifests)
            out = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=(total, *first.shape[1:]))
            row = 0
            for s, m in zip(shards, manifests):
                part = np.load(s.with_suffix(".npy"), mmap_mode="r", allow_pickle=False)
                if len(part) != len(m):
                    raise RuntimeError(f"{s}: {len(part)} images but {len(m)} manifest rows")
                out[row : row + len(part)] = part
                row += len(part)
            out.flush()
            del out
            pd.concat(manifests, ignore_index=True).to_parquet(tmp / "manifest.parquet", index=False)

        return self._commit(key, write, meta)

    def _commit(self, key: str, write, meta: dict) -> Path:
        """Write a pool into a temporary directory, then rename it into place."""
        with atomic_directory(self.path(key)) as tmp:
            write(tmp)
            # meta.json last: its presence marks a complete pool
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        publish(self.path(key))  # to a remote home's object store, for every other node
        return self.path(key)
