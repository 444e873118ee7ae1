"""The sharded, resumable Ray Data pipeline: determinism, resume after a kill, scores."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, tiny_overrides

from raysynth.context import split_of
from raysynth.pool import PoolStore, pool_key
from raysynth.pool.pipeline import generate_pool, generate_strengths
from raysynth.pool.shards import finished_shards
from raysynth.validate import load_config

# shards slow enough to kill between them: a tiny ddpm with many denoising steps
SLOW_DDPM = [
    "pool.generator=ddpm",
    "pool.options.channels=[8, 16]",
    "pool.options.train_steps=2",
    "pool.options.inference_steps=40",
    "pool.shard_size=4",
]

GENERATE = """
import sys
from raysynth.validate import load_config
from raysynth.pool.pipeline import generate_pool
from raysynth.pool import PoolStore
from raysynth.cluster import connect_ray
from raysynth.context import split_of
config = load_config(sys.argv[1], sys.argv[3:])
connect_ray()
generate_pool(split_of(config), config.pool, store=PoolStore(sys.argv[2]))
"""


def _config(extra):
    return load_config(REPO / "search_spaces" / "digits.yaml", tiny_overrides() + extra)


@pytest.fixture(scope="module")
def reference_pool(ray_session, tmp_path_factory):
    """The SLOW_DDPM pool generated without interruption (compared with the chaos runs)."""
    config = _config(SLOW_DDPM)
    store = PoolStore(tmp_path_factory.mktemp("reference"))
    key, _ = generate_pool(split_of(config), config.pool, store=store)
    return store.load(key)


@pytest.mark.story
def test_killed_generation_resumes_and_matches_an_uninterrupted_run(ray_session, reference_pool, tmp_path):
    config = _config(SLOW_DDPM)
    split = split_of(config)
    key = pool_key(split.fingerprint, config.pool)
    store = PoolStore(tmp_path / "killed")
    work = store.shard_dir(key)
    total = -(-config.pool.per_class * split.num_classes // config.pool.shard_size)
    # the driver in its own process (it attaches to this session's Ray), SIGKILLed
    # once a few shards are written
    proc = subprocess.Popen(
        [sys.executable, "-c", GENERATE, str(REPO / "search_spaces" / "digits.yaml"), str(store.root), *tiny_overrides(), *SLOW_DDPM],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address},
    )
    try:
        deadline = time.time() + 240
        while len(finished_shards(work)) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    time.sleep(3)  # Ray ends the dead driver's actors
    done = finished_shards(work)
    assert 3 <= len(done) < total, f"kill came too late: {len(done)} of {total} shards"
    assert not store.exists(key)

    key2, generated = generate_pool(split, config.pool, store=store)
    assert key2 == key and generated
    meta = store.load(key).meta
    assert meta["generated_shards"] <= total - len(done)  # finished shards were not redone
    # the shards the killed run wrote are the pool's own (nothing copied), no temp file left
    assert sorted(work.glob("*.npy")) and not [p for p in [*store.root.iterdir(), *work.iterdir()] if p.name.startswith(".")]

    a, b = store.load(key), reference_pool
    assert np.array_equal(a.images, b.images)
    pd.testing.assert_frame_equal(a.manifest, b.manifest)


def test_actor_count_and_strengths_sharing_a_run_do_not_change_the_pool(ray_session, tmp_path):
    """A pool is the same on 1 or 2 actors, and generated alone or in one run with the
    search's other strengths (prepare's: the actors start once for all of them)."""
    one = _config(["pool.shard_size=8"])
    two = _config(["pool.shard_size=8", "pool.actors=2"])
    split = split_of(one)
    a, b = PoolStore(tmp_path / "a"), PoolStore(tmp_path / "b")
    key, _ = generate_pool(split, one.pool, store=a)
    pools = generate_strengths(split, two.pool, [one.pool.strength, 0.5], store=b)
    assert pools[one.pool.strength] == (key, True)  # actors and shard size are not in the key
    assert np.array_equal(a.load(key).images, b.load(key).images)
    other = b.load(pools[0.5][0])
    assert set(other.manifest["strength"]) == {0.5} and not np.array_equal(other.images, a.load(key).images)
    assert b.load(key).meta["pools_in_run"] == 2 == other.meta["pools_in_run"]  # one run made both
    assert other.meta["actor_start_s"] > 0  # the actors' start-up is recorded
    assert generate_strengths(split, two.pool, [0.5, one.pool.strength], store=b) == {0.5: (pools[0.5][0], False), one.pool.strength: (key, False)}


def test_diff_gen_pool_with_clip_scores_and_load_time_filter(ray_session, tmp_path):
    config = _config(["pool.mode=gen", "pool.clip_model=raysynth-tiny", "pool.per_class=8", "pool.filter=bottom", "pool.filter_fraction=0.25"])
    split = split_of(config)
    store = PoolStore(tmp_path / "pools")
    key, _ = generate_pool(split, config.pool, store=store)
    pool = store.load(key)
    m = pool.manifest
    assert (m["reference_index"] == -1).all() and (m["reference_class"] == m["target_class"]).all()
    assert {"clip_score", "clip_pred", "clip_margin"} <= set(m.columns)
    assert m["clip_score"].between(0, 1).all()
    images, soft, target = pool.mapped(config.pool.gamma, split.num_classes, "bottom", 0.25)
    assert len(images) == 6 * split.num_classes  # 2 of 8 dropped per class
    kept_min = pd.Series(m["clip_score"].to_numpy()).groupby(m["target_class"]).apply(lambda s: s.sort_values().iloc[2])
    assert torch_le(images, pool, m, kept_min)
    assert (soft.argmax(1) == target).all()  # Diff-Gen labels are one-hot on the target


def torch_le(images, pool, manifest, kept_min) -> bool:
    """Every image the filter kept scores at least the third-lowest of its class."""
    from raysynth.pool.filters import keep_mask

    keep = keep_mask(manifest, "bottom", 0.25)
    kept = manifest[keep]
    return len(kept) == len(images) and bool((kept["clip_score"].to_numpy() >= kept_min[kept["target_class"]].to_numpy()).all())


@pytest.mark.story
def test_a_generation_actor_killed_mid_shard_still_gives_the_full_pool(ray_session, reference_pool, tmp_path):
    """SIGKILL the actor process while it is generating: Ray Data restarts the actor and
    retries its shard; the pool is complete and equal to an uninterrupted run."""
    import threading

    import psutil

    config = _config(SLOW_DDPM)
    split = split_of(config)
    key = pool_key(split.fingerprint, config.pool)
    store = PoolStore(tmp_path / "chaos")
    done = {}
    worker = threading.Thread(target=lambda: done.update(result=generate_pool(split, config.pool, store=store)))
    worker.start()
    victims = []
    deadline = time.time() + 240
    while not victims and time.time() < deadline:
        if len(finished_shards(store.shard_dir(key))) >= 2:
            # the actor is a process Ray started for this test's own generation
            victims = [p for p in psutil.process_iter(["cmdline"]) if "GenerateShards" in " ".join(p.info["cmdline"] or [])]
        time.sleep(0.02)
    assert victims, "no generation actor found"
    for p in victims:
        p.kill()
    worker.join(timeout=600)
    assert done.get("result") == (key, True)
    a, b = store.load(key), reference_pool
    assert len(a) == config.pool.per_class * split.num_classes
    assert np.array_equal(a.images, b.images)
    pd.testing.assert_frame_equal(a.manifest, b.manifest)
