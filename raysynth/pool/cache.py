"""A node's copies of a remote home's pools, bounded by ``RAYSYNTH_CACHE_GB``.

With ``RAYSYNTH_HOME`` in a bucket, every node that trains on a pool downloads it once
into its cache (``RAYSYNTH_CACHE``) and memory-maps it there. A CUB pool is ~15 GB, so
the cache is bounded: before a pool is fetched, the least recently used pools no
process on the node is using are deleted until the new one fits.

"In use" is a shared ``flock`` on the pool's ``.in-use`` file, taken by every process
that loads the pool (:func:`hold`) and held while its Pool lives; eviction takes the
exclusive lock without waiting, so a pool some trial still maps is never deleted. Use
is recorded as the lock file's mtime (LRU order).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_GB_ENV = "RAYSYNTH_CACHE_GB"
DEFAULT_CACHE_GB = 100.0
IN_USE = ".in-use"


def cache_limit_bytes() -> float:
    """``RAYSYNTH_CACHE_GB`` (default 100) in bytes."""
    from raysynth.config import ConfigError

    text = os.environ.get(CACHE_GB_ENV, str(DEFAULT_CACHE_GB))
    try:
        gb = float(text)
    except ValueError:
        gb = -1.0
    if not gb > 0:
        raise ConfigError(f"{CACHE_GB_ENV}={text}: must be a number of GB > 0")
    return gb * 1e9


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


class Lease:
    """A shared lock on a pool's ``.in-use`` file: the pool is not evicted while held."""

    def __init__(self, path: Path):
        self.fd = os.open(Path(path) / IN_USE, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_SH)
        os.utime(self.fd)  # last use, for the LRU order

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock
            self.fd = None

    def __del__(self):
        self.release()


def hold(path: Path) -> Lease | None:
    """A lease on the pool at ``path`` (None when the directory is gone: evicted just now)."""
    try:
        lease = Lease(path)
    except FileNotFoundError:
        return None
    if not (Path(path) / "meta.json").is_file():  # evicted between the fetch and the lock
        lease.release()
        return None
    return lease


def _last_used(path: Path) -> float:
    marker = path / IN_USE
    return marker.stat().st_mtime if marker.exists() else path.stat().st_mtime


def make_room(root: Path, incoming: int, keep: str | None = None) -> list[str]:
    """Evict the least recently used complete pools under ``root`` that no process
    holds, until the pools there plus ``incoming`` bytes fit ``RAYSYNTH_CACHE_GB``.
    Returns the evicted keys."""
    limit = cache_limit_bytes()
    root = Path(root)
    pools = [p for p in root.iterdir() if p.is_dir() and (p / "meta.json").is_file() and p.name != keep] if root.is_dir() else []
    sizes = {p: directory_bytes(p) for p in pools}
    total = sum(sizes.values())
    evicted = []
    for path in sorted(pools, key=_last_used):
        if total + incoming <= limit:
            break
        fd = os.open(path / IN_USE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a trial on this node maps it
            os.close(fd)
            continue
        try:
            doomed = root / f".evict-{path.name}-{uuid.uuid4().hex[:8]}"
            os.replace(path, doomed)  # readers see the pool whole or not at all
        finally:
            os.close(fd)
        shutil.rmtree(doomed, ignore_errors=True)
        total -= sizes[path]
        evicted.append(path.name)
        log.info("pool cache: evicted %s (%.2f GB, least recently used) to stay under %s=%g",
                 path.name, sizes[path] / 1e9, CACHE_GB_ENV, limit / 1e9)
    if total + incoming > limit:
        log.warning("pool cache: %.1f GB after this pool, over %s=%g: the other pools are in use",
                    (total + incoming) / 1e9, CACHE_GB_ENV, limit / 1e9)
    return evicted
