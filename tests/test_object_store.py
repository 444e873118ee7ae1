"""RAYSYNTH_HOME in an object store: what one node publishes another fetches, against a
real S3-compatible server (the ``s3_server`` fixture: moto on 127.0.0.1). A whole search
with home and storage in S3, resumed from the bucket, is in test_shared_machine.py."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import S3_BUCKET, s3_keys


@pytest.fixture
def s3_home(s3_server, monkeypatch, tmp_path):
    for k, v in {**s3_server, "RAYSYNTH_HOME": f"s3://{S3_BUCKET}/unit-{tmp_path.name}"}.items():
        monkeypatch.setenv(k, v)

    def on_node(name):  # a node: its own local cache of the remote home
        monkeypatch.setenv("RAYSYNTH_CACHE", str(tmp_path / name))

    return on_node


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


def test_a_missing_bucket_exits_2_with_one_line(tmp_path, s3_server, monkeypatch, capsys):
    from raysynth.cli import main

    for k, v in {**s3_server, "RAYSYNTH_HOME": str(tmp_path / "home")}.items():
        monkeypatch.setenv(k, v)
    assert main(["search", "--storage", "s3://no-such-bucket/tune"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--storage: cannot write to s3://no-such-bucket/tune" in lines[0], lines
    monkeypatch.setenv("RAYSYNTH_HOME", "s3://no-such-bucket/home")
    assert main(["search"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "RAYSYNTH_HOME: cannot write to s3://no-such-bucket/home" in lines[0], lines
    assert not (tmp_path / "home").exists()
