"""Content-addressed store of synthetic pools under ``RAYSYNTH_HOME/pools``.

A generated pool is its shards, written by the generation actors where they stand into
``pools/<key>/shards/`` (a shared path, or the home's bucket), plus a manifest over them
and ``meta.json``, which the driver writes last: the images never pass through the
driver. With a remote home (``s3://...``) each node that trains on a pool downloads it
once (into its cache, renamed into place whole), then memory-maps its shards.

A pool's key hashes exactly the inputs that change its images: the dataset split, the
generator and its config, the strength, the quality map, the plan seed and size. The
soft-label exponent gamma is *not* in the key — labels are computed at load time — so
a search over gamma reuses one pool. Pools are written to a temporary directory and
renamed into place, so a crash never leaves a half-written pool behind.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from raysynth.atomic import atomic_directory
from raysynth.config import PoolConfig
from raysynth.generators import GENERATORS
from raysynth.home import PUBLISHED, fetch, fingerprint, publish, raysynth_home, remote_twin
from raysynth.pool.cache import Lease, hold, make_room
from raysynth.pool.filters import keep_mask
from raysynth.pool.labels import diffmix_soft_labels
from raysynth.storage import exists, join, read_parquet, tree_bytes, upload, write_text

SHARDS = "shards"  # inside a pool's directory: the actors' shards (<name>.npy + <name>.parquet)


def pool_label(pool: PoolConfig) -> str:
    """A pool variant as people read it: its strength, or its per-image strength set."""
    if pool.strengths:
        return "{" + ", ".join(f"{s:g}" for s in sorted(pool.strengths)) + "}"
    return f"{pool.strength:g}"


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


class ShardedImages:
    """Memory-mapped shards (uint8, n_i x 3 x H x W each) read as one N x 3 x H x W array:
    integer-array indexing gathers rows from the shards that hold them."""

    def __init__(self, shards: list[np.ndarray]):
        self.shards = shards
        self.offsets = np.cumsum([0] + [len(a) for a in shards])
        self.shape = (int(self.offsets[-1]), *shards[0].shape[1:])
        self.dtype = shards[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.arange(self.shape[0])[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        for shard in np.unique(which):
            at = np.flatnonzero(which == shard)
            out[at] = self.shards[shard][rows[at] - self.offsets[shard]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = np.concatenate([np.asarray(a) for a in self.shards])
        return whole if dtype is None else whole.astype(dtype)


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
    """Synthetic images (uint8, N x 3 x H x W: one memory-mapped array, or the pool's
    shards read as one) and their manifest (one row per image)."""

    images: np.ndarray | ShardedImages
    manifest: pd.DataFrame
    meta: dict
    # a remote home's pool: this process's hold on the node's copy (not evicted meanwhile)
    lease: Lease | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.manifest)

    def mapped(
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
        if (self.path(key) / "meta.json").is_file():  # meta.json is written last
            return True
        remote = remote_twin(self.path(key))
        return remote is not None and exists(join(remote, PUBLISHED))

    def shard_dir(self, key: str) -> Path:
        """Where the generation actors write a pool's shards (its twin in a remote home)."""
        return self.path(key) / SHARDS

    def load(self, key: str) -> Pool:
        path = self.path(key)
        lease = self._fetch_and_hold(key) if remote_twin(path) is not None else None
        manifest = pd.read_parquet(path / "manifest.parquet")
        meta = json.loads((path / "meta.json").read_text())
        # memory-mapped: a trial reads the rows it keeps, not the whole pool
        if (path / "images.npy").is_file():  # one array (PoolStore.save)
            images = np.load(path / "images.npy", mmap_mode="r", allow_pickle=False)
        else:  # the actors' shards, in the manifest's order
            images = ShardedImages([np.load(path / SHARDS / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                                    for name, _ in meta["shard_files"]])
        if len(images) != len(manifest):
            raise RuntimeError(f"pool {key}: {len(images)} images but {len(manifest)} manifest rows")
        return Pool(images, manifest, meta, lease)

    def _fetch_and_hold(self, key: str) -> Lease:
        """A remote home's pool on this node: copied once into the node's cache (after
        making room under RAYSYNTH_CACHE_GB), then held so that it is not evicted while
        this process maps it."""
        path = self.path(key)
        for _ in range(3):  # another process may evict it between the fetch and the hold
            if not path.exists():
                make_room(self.root, tree_bytes(remote_twin(path)), keep=key)
            fetch(path, directory=True)
            lease = hold(path)
            if lease is not None:
                return lease
        raise RuntimeError(f"pool {key}: evicted from this node's cache while loading it three times")

    def save(self, key: str, pool: Pool) -> Path:
        def write(tmp: Path) -> None:
            np.save(tmp / "images.npy", np.asarray(pool.images), allow_pickle=False)
            pool.manifest.to_parquet(tmp / "manifest.parquet", index=False)

        return self._commit(key, write, pool.meta)

    def finish(self, key: str, shards: list[str], meta: dict) -> Path:
        """Make a pool of its written shards (names under :meth:`shard_dir`, in order): the
        shards' manifests concatenated, then ``meta.json`` (and, in a remote home, the
        published marker) last. Only the small manifests are read: the images stay where
        the actors wrote them."""
        remote = remote_twin(self.shard_dir(key))
        parts = []
        for name in shards:
            location = join(remote, f"{name}.parquet") if remote else self.shard_dir(key) / f"{name}.parquet"
            parts.append(read_parquet(location))
        manifest = pd.concat(parts, ignore_index=True)
        meta = {**meta, "shard_files": [[name, len(part)] for name, part in zip(shards, parts)]}
        if remote is None:
            from raysynth.atomic import atomic_file

            atomic_file(self.path(key) / "manifest.parquet", lambda tmp: manifest.to_parquet(tmp, index=False))
            # meta.json last: its presence marks a complete pool
            atomic_file(self.path(key) / "meta.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True)))
            return self.path(key)
        pool_uri = remote_twin(self.path(key))
        with tempfile.TemporaryDirectory() as tmp:  # not the node's cache: a reader there fetches the whole pool
            manifest.to_parquet(Path(tmp) / "manifest.parquet", index=False)
            upload(Path(tmp) / "manifest.parquet", join(pool_uri, "manifest.parquet"))
        write_text(join(pool_uri, "meta.json"), json.dumps(meta, indent=2, sort_keys=True))
        write_text(join(pool_uri, PUBLISHED), "")  # complete: nodes may fetch it now
        return self.path(key)

    def _commit(self, key: str, write, meta: dict) -> Path:
        """Write a pool into a temporary directory, then rename it into place."""
        with atomic_directory(self.path(key)) as tmp:
            write(tmp)
            # meta.json last: its presence marks a complete pool
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        publish(self.path(key))  # to a remote home's object store, for every other node
        return self.path(key)

