"""RAYSYNTH_HOME and --storage in an object store, against a real S3-compatible server
(the ``s3_server`` fixture: moto on 127.0.0.1, stopped by its PID): a search finishes
and resumes from the bucket; what one node publishes another fetches; a missing bucket
is one line and exit 2.

Before: ``--storage s3://bucket/x`` silently became a local directory ``./s3:/bucket/x``.
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, S3_BUCKET, s3_keys, tiny_overrides


@pytest.fixture
def s3_home(s3_server, monkeypatch, tmp_path):
    for k, v in {**s3_server, "RAYSYNTH_HOME": f"s3://{S3_BUCKET}/unit-{tmp_path.name}"}.items():
        monkeypatch.setenv(k, v)

    def on_node(name):  # a node: its own local cache of the remote home
        monkeypatch.setenv("RAYSYNTH_CACHE", str(tmp_path / name))

    return on_node


@pytest.mark.story
def test_a_search_with_home_and_storage_in_s3_finishes_and_resumes(ray_session, s3_home, s3_server, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from raysynth.home import raysynth_home
    from raysynth.search.options import SearchOptions
    from raysynth.search.run import run_search
    from raysynth.tracking import default_tracking_uri
    from raysynth.validate import load_config

    s3_home("driver")
    monkeypatch.chdir(tmp_path)
    config = load_config(REPO / "search_spaces" / "digits.yaml", tiny_overrides() + ["train.epochs=1", "search.final_eval=false", "pool.shard_size=24"])
    storage = f"s3://{S3_BUCKET}/tune-{tmp_path.name}"
    options = SearchOptions(default_tracking_uri(), "in-s3", storage, "s1")
    summary = run_search(config, options)
    assert summary.trials == 2
    assert not list(tmp_path.glob("s3*"))  # a URI never becomes a local directory

    # in the bucket: the backbone, the pool (complete: its shards, uploaded by the
    # generation actors, are gone), Tune's state and raysynth's two records
    home = [k.split("/", 1)[1] for k in s3_keys(s3_server, f"unit-{tmp_path.name}/")]
    assert any(k.startswith("weights/") and k.endswith(".pt") for k in home), home
    pools = {k.split("/")[1] for k in home if k.startswith("pools/") and k.endswith("/meta.json")}
    assert len(pools) == 1
    key = pools.pop()
    assert f"pools/{key}/.published" in home and f"pools/{key}/manifest.parquet" in home
    # the images stay in the shards the actors uploaded: no second, assembled copy
    assert [k for k in home if k.startswith(f"pools/{key}/shards/") and k.endswith(".npy")]
    assert not [k for k in home if k.startswith(f"pools/{key}/") and k.endswith("images.npy")]
    tune = {k.split("/", 2)[2] for k in s3_keys(s3_server, f"tune-{tmp_path.name}/s1/")}
    assert {"raysynth_config.json", "raysynth_parent_run.json"} <= tune and any(k.startswith("experiment_state") for k in tune)

    # MLflow: the database in this machine's cache, the artifacts in the bucket
    client = MlflowClient(options.tracking_uri)
    assert options.tracking_uri == f"sqlite:///{raysynth_home() / 'mlflow.db'}"
    assert client.get_experiment_by_name("in-s3").artifact_location.startswith(f"s3://{S3_BUCKET}/unit-{tmp_path.name}/artifacts/")
    report = client.download_artifacts(summary.parent_run_id, "report.html", str(tmp_path))
    assert "<html" in open(report).read().lower()

    # --resume from the bucket, on a machine whose local copies of pools and weights are gone
    shutil.rmtree(raysynth_home() / "pools")
    shutil.rmtree(raysynth_home() / "weights")
    again = run_search(config, SearchOptions(options.tracking_uri, "in-s3", storage, "s1", resume=True))
    assert again.parent_run_id == summary.parent_run_id and again.trials == 2
    trials = client.search_runs([client.get_experiment_by_name("in-s3").experiment_id], "tags.`raysynth.kind` = 'trial'")
    assert len(trials) == 2  # restored, not run again


def test_a_pool_published_by_one_node_is_fetched_by_another(s3_home, s3_server):
    from raysynth.home import raysynth_home
    from raysynth.pool import PoolStore
    from raysynth.pool.store import Pool

    images = np.arange(4 * 3 * 8 * 8, dtype=np.uint8).reshape(4, 3, 8, 8)
    manifest = pd.DataFrame({"target_class": [0, 1, 0, 1], "reference_class": [1, 0, 1, 0], "strength": [0.5] * 4})
    s3_home("node-a")
    PoolStore().save("k1", Pool(images, manifest, {"key": "k1"}))
    remote = [k for k in s3_keys(s3_server, "unit-") if "/pools/k1/" in k]
    assert sorted(k.split("/")[-1] for k in remote) == [".published", "images.npy", "manifest.parquet", "meta.json"]

    s3_home("node-b")
    store = PoolStore()
    assert not store.path("k1").exists()
    assert store.exists("k1") and not store.path("k1").exists()  # known without a copy
    pool = store.load("k1")  # copied once, then memory-mapped
    assert store.path("k1").is_dir() and str(store.path("k1")).startswith(str(raysynth_home()))
    assert isinstance(pool.images, np.memmap) and np.array_equal(pool.images, images)
    assert json.loads((store.path("k1") / "meta.json").read_text()) == {"key": "k1"}
    assert not store.exists("k2")


def test_a_nodes_pool_cache_stays_under_its_bound_and_keeps_pools_in_use(s3_home, s3_server, monkeypatch):
    """RAYSYNTH_CACHE_GB bounds a node's copies of a bucket home's pools: the least
    recently used pool no process holds is evicted; a pool a trial still maps is kept.
    Concurrent loads of one pool on one node fetch it safely (one copy, no temp left)."""
    import gc
    import threading

    from raysynth.pool import PoolStore
    from raysynth.pool.cache import directory_bytes
    from raysynth.pool.store import Pool

    images = np.arange(64 * 3 * 8 * 8, dtype=np.uint8).reshape(64, 3, 8, 8)
    manifest = pd.DataFrame({"target_class": [0, 1] * 32, "reference_class": [1, 0] * 32, "strength": [0.5] * 64})
    s3_home("writer")
    for key in ("a", "b", "c"):
        PoolStore().save(key, Pool(images, manifest, {"key": key}))

    s3_home("node")
    store = PoolStore()
    loads = []
    threads = [threading.Thread(target=lambda: loads.append(store.load("a"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 4 and all(np.array_equal(p.images, images) for p in loads)
    assert sorted(p.name for p in store.root.iterdir()) == ["a"]  # one copy, no temp directory
    one = directory_bytes(store.path("a"))
    monkeypatch.setenv("RAYSYNTH_CACHE_GB", str(1.5 * one / 1e9))  # room for one pool and a half
    b = store.load("b")  # "a" is still mapped by the four loads: kept, over the bound
    assert store.path("a").exists() and store.path("b").exists()
    loads.clear()
    gc.collect()  # the loads of "a" are gone: nothing holds it now
    c = store.load("c")  # "a" (least recently used, unheld) goes; "b" is held
    assert not store.path("a").exists() and store.path("b").exists() and store.path("c").exists()
    assert np.array_equal(b.images, images) and np.array_equal(c.images, images)
    assert np.array_equal(store.load("a").images, images)  # fetched again on demand
    from raysynth.config import ConfigError
    from raysynth.pool.cache import cache_limit_bytes

    monkeypatch.setenv("RAYSYNTH_CACHE_GB", "0")
    with pytest.raises(ConfigError, match="RAYSYNTH_CACHE_GB=0: must be a number of GB > 0"):
        cache_limit_bytes()


def test_a_missing_bucket_exits_2_with_one_line(tmp_path, s3_server, monkeypatch, capsys):
    from raysynth.cli import main

    for k, v in {**s3_server, "RAYSYNTH_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(k, v)
    assert main(["search", "--storage", "s3://no-such-bucket/tune"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--storage: cannot write to s3://no-such-bucket/tune" in lines[0], lines
    # a bucket home with MLflow's default store (sqlite on the head's disk): refused
    monkeypatch.setenv("RAYSYNTH_HOME", f"s3://{S3_BUCKET}/no-tracking-{tmp_path.name}")
    assert main(["search"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--tracking-uri: RAYSYNTH_HOME is a bucket" in lines[0] and "lost with the head" in lines[0], lines
    assert not [k for k in s3_keys(s3_server, f"no-tracking-{tmp_path.name}/") if not k.endswith("/")]  # (the writability probe's folder)
    monkeypatch.setenv("RAYSYNTH_HOME", "s3://no-such-bucket/home")
    assert main(["search"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "RAYSYNTH_HOME: cannot write to s3://no-such-bucket/home" in lines[0], lines
    assert not (tmp_path / "home").exists()
