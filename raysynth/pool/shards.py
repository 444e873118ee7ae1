"""The unit of generation work: the plan (one row per synthetic image) cut into shards,
and the Ray Data callable that generates, scores and writes whole shards.

A shard is written by its actor where it stands, into the pool's own directory in the
store, ``<store>/<key>/shards/`` (images ``.npy``, then the manifest ``.parquet``, whose
presence marks the shard finished; local files through temporary names renamed into
place), so a killed run, re-run, generates only the missing shards. With a home in an
object store, the actor uploads the two files to that directory's twin there (manifest
last). The driver never reads the images: it lists the finished shards and, at the end,
concatenates their small manifests (:meth:`raysynth.pool.store.PoolStore.finish`).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from raysynth.atomic import atomic_file
from raysynth.devices import placement, work_device
from raysynth.config import PoolConfig
from raysynth.data.base import ImageSet
from raysynth.generators import create_generator
from raysynth.home import adopt_home, fetch, fingerprint
from raysynth.storage import join, list_names, upload


def plan_pool(shots: ImageSet, num_classes: int, config: PoolConfig, strength: float) -> pd.DataFrame:
    """One row per synthetic image. Diff-Mix draws the reference from another class,
    Diff-Aug from the target class itself, Diff-Gen has none (reference_index -1)."""
    rng = np.random.default_rng(config.seed)
    labels = shots.labels.numpy()
    by_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    rows = []
    for target in range(num_classes):
        for _ in range(config.per_class):
            if config.mode == "gen":
                rows.append((len(rows), -1, target, target, strength))
                continue
            if config.mode == "mix":
                ref_class = int(rng.choice([c for c in range(num_classes) if c != target]))
            else:
                ref_class = target
            ref = int(rng.choice(by_class[ref_class]))
            rows.append((len(rows), ref, ref_class, target, strength))
    plan = pd.DataFrame(rows, columns=["id", "reference_index", "reference_class", "target_class", "strength"])
    if config.strengths:  # Diff-Mix: each image its own strength (its own stream: references unchanged)
        draw = np.random.default_rng([config.seed, 1]).choice(np.asarray(config.strengths, dtype=float), size=len(plan))
        plan["strength"] = draw
    # per-image seeds from the plan seed and the row id: stable under re-sharding
    plan["seed"] = [int(fingerprint(config.seed, i, length=8), 16) for i in plan["id"]]
    plan["shard"] = plan["id"] // config.shard_size
    return plan


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


def finished_shards(work: Path, remote: str | None = None) -> set[int]:
    """Shards whose manifest exists (written last, so the images are complete too), in
    the local directory ``work`` or, with a remote home, its twin ``remote`` (listed, not
    downloaded)."""
    if remote is not None:
        names = list_names(remote)
    elif work.is_dir():
        names = [p.name for p in work.glob("shard-*.parquet")]
    else:
        return set()
    return {int(n.split("-")[1].split(".")[0]) for n in names if n.startswith("shard-") and n.endswith(".parquet")}


def write_shard(work: Path, shard: int, images: np.ndarray, manifest: pd.DataFrame, remote: str | None = None) -> None:
    """Write a finished shard into ``work``, or (``remote``: the work directory's URI in
    the home's object store) upload it there; the manifest goes last either way."""
    def save_npy(tmp):
        with open(tmp, "wb") as f:
            np.save(f, images, allow_pickle=False)

    if remote is not None:
        with tempfile.TemporaryDirectory() as d:
            save_npy(Path(d) / "images.npy")
            manifest.to_parquet(Path(d) / "manifest.parquet", index=False)
            upload(Path(d) / "images.npy", join(remote, f"{shard_name(shard)}.npy"))
            upload(Path(d) / "manifest.parquet", join(remote, f"{shard_name(shard)}.parquet"))
        return
    work.mkdir(parents=True, exist_ok=True)
    atomic_file(work / f"{shard_name(shard)}.npy", save_npy)
    atomic_file(work / f"{shard_name(shard)}.parquet", lambda tmp: manifest.to_parquet(tmp, index=False))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    if images.dtype == torch.uint8:
        return images.numpy()
    return (images.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


class ShardWork(NamedTuple):
    """One pool of a generation run, as its actors see it: the plan, and where finished
    shards go: the pool's shard directory (``work``) or, when the home is remote, its
    twin in the home's object store (``remote_work``; the actor's node need not see the
    driver's local directory then)."""

    plan: pd.DataFrame
    work: str
    remote_work: str | None = None


class GenerateShards:
    """Ray Data callable class: one generator (and CLIP scorer) per actor, loaded once for
    every pool of the run (one per strength); each call generates, scores and writes
    whole shards (rows ``{"pool": key, "shard": id}``)."""

    def __init__(
        self,
        pools: dict[str, ShardWork],
        config: PoolConfig,
        classes: list[str],
        metaclass: str,
        references: np.ndarray,
        learned: ImageSet | None,
        fitted: str | None,
        threads: int = 1,
        home: dict[str, str] | None = None,
    ):
        began = time.time()
        if home:
            adopt_home(home)  # the driver's home: where a fitted generator is fetched from
        torch.set_num_threads(max(1, threads))
        device = work_device()  # the GPU Ray gave this actor, if torch sees it
        self.where = placement()
        self.pools, self.config = pools, config
        self.references = references  # uint8 N x 3 x H x W
        self.size = references.shape[-1]
        self.generator = create_generator(config, classes, metaclass, device)
        if fitted is not None:
            fetch(Path(fitted), directory=True)  # from a remote home, on a node without it
            self.generator.load(Path(fitted))
        else:
            self.generator.fit(learned)
        self.scorer = None
        if config.clip_model:
            from raysynth.generators.filtering import ClipScorer

            self.scorer = ClipScorer(config.clip_model, config.clip_pretrained, classes, metaclass, device)
        # the actor's start-up, for meta.json and benchmarks: its process start (Ray's
        # worker, imports) and loading the generator and scorer
        self.startup = {"load_s": time.time() - began, "start_s": began - _process_started()}

    def generate(self, rows: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
        # torch.tensor copies: Ray Data hands read-only Arrow-backed columns
        targets = torch.tensor(rows["target_class"].to_numpy(np.int64))
        seeds = torch.tensor(rows["seed"].to_numpy(np.int64))
        if self.config.mode == "gen":
            images, _ = self.generator.generate(targets, seeds, self.size)
        else:
            refs = torch.from_numpy(self.references[rows["reference_index"].to_numpy(np.int64)]).float() / 255.0
            strength = rows["strength"].to_numpy()
            images = None
            for s in np.unique(strength):  # one call per strength in the shard (pool.strengths)
                at = torch.from_numpy(np.flatnonzero(strength == s))
                part, _ = self.generator.translate(refs[at], targets[at], float(s), seeds[at])
                if images is None:
                    images = torch.empty((len(rows), *part.shape[1:]), dtype=part.dtype)
                images[at] = part
        manifest = rows.reset_index(drop=True).copy()
        if self.scorer is not None:
            for column, values in self.scorer.score(images, targets).items():
                manifest[column] = values
        return to_uint8(images), manifest

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seconds, sizes = [], []
        for pool, shard in zip(batch["pool"].tolist(), batch["shard"].tolist()):
            start = time.perf_counter()
            job = self.pools[pool]
            rows = job.plan[job.plan["shard"] == shard]
            images, manifest = self.generate(rows)
            write_shard(Path(job.work), shard, images, manifest, job.remote_work)
            seconds.append(time.perf_counter() - start)
            sizes.append(len(rows))
        n = len(seconds)
        return {
            "pool": batch["pool"],
            "shard": batch["shard"],
            "images": np.array(sizes),
            "seconds": np.array(seconds),
            # where the actor runs: recorded in the pool's meta.json
            "node": np.array([self.where["node"]] * n),
            "gpu_ids": np.array([self.where["gpu_ids"]] * n),
            "actor_start_s": np.array([self.startup["start_s"]] * n),
            "actor_load_s": np.array([self.startup["load_s"]] * n),
        }


def _process_started() -> float:
    """When this process started (epoch seconds), from /proc; now where there is none."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()
