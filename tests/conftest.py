"""Shared fixtures: one RAYSYNTH_HOME and one Ray instance per test session, tiny configs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def raysynth_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("raysynth_home")
    old = os.environ.get("RAYSYNTH_HOME")
    os.environ["RAYSYNTH_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield home
    if old is None:
        os.environ.pop("RAYSYNTH_HOME", None)
    else:
        os.environ["RAYSYNTH_HOME"] = old


@pytest.fixture(scope="session")
def ray_session(raysynth_home, s3_server):
    """One local Ray instance shared by every test that needs Ray; shut down at the end.
    Its workers inherit the S3 test server's endpoint and credentials (set here, before
    Ray starts), so a search with its home in S3 can run on it."""
    import ray

    os.environ.update(s3_server)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def tiny_overrides() -> list[str]:
    """A config that exercises every code path in seconds."""
    return [
        "model.pretrain.steps=30",
        "pool.per_class=12",
        "train.epochs=2",
        "train.steps_per_epoch=3",
        "train.batch_real=8",
        "train.batch_syn=8",
        "train.n_contr=1",  # the demo trains 2 seeds per trial; one exercises every path here
        "search.trials=2",
        "search.concurrency=2",
        "search.scheduler.grace_period=1",
        # a searched config field beside the weights (the default searches only weights)
        "search.space.train.lr={type: loguniform, low: 1.0e-3, high: 3.0e-3}",
    ]


@pytest.fixture
def tiny_config():
    from raysynth.validate import load_config

    return load_config(REPO / "search_spaces" / "digits.yaml", tiny_overrides())


S3_BUCKET = "raysynth-test"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto in server mode) on 127.0.0.1 with one bucket,
    ``S3_BUCKET``; yields the environment that points boto3 and pyarrow at it. Stopped by
    its PID at the end of the session."""
    import socket
    import subprocess
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(env["AWS_ENDPOINT_URL"], timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto server did not start (exit {proc.poll()})") from None
                time.sleep(0.3)
        s3_client(env).create_bucket(Bucket=S3_BUCKET)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def s3_client(env):
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def s3_keys(env, prefix: str) -> list[str]:
    keys = []
    for page in s3_client(env).get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def run_job(args: list[str], env: dict | None = None, timeout: int = 600):
    import subprocess

    return subprocess.run(
        [sys.executable, str(REPO / "jobs" / "search.py"), *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO,
    )


def pytest_collection_modifyitems(config, items):
    """The two tests that start a second Ray cluster on the machine (``ray start`` for
    ``ray job submit``; Ray's multi-node ``Cluster``) run last: each writes the machine's
    current-cluster address, so a test after them that starts a job with the default
    ``address="auto"`` could attach to that cluster instead of starting its own. Every
    other test runs in any order (a 2-worker TorchTrainer trial no longer leaves its
    placement group behind: see ``ray_train._report_to_tune_before_last``)."""
    items.sort(key=lambda item: "test_job_submit" in item.nodeid or "test_multinode" in item.nodeid)


# ------------------------------------------------------------------ miniature datasets


CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def _jpeg(path, colour, size=(40, 30)):
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sum(colour))
    pixels = np.clip(np.array(colour)[None, None, :] + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)


def make_cub(root, train_per_class=8, test_per_class=3):
    """The official CUB file formats, with 3 classes of coloured JPEGs."""
    images, labels, split = [], [], []
    for c, name in enumerate(CUB_CLASSES, 1):
        for i in range(train_per_class + test_per_class):
            rel = f"{name}/{name.split('.')[1]}_{i:04d}.jpg"
            _jpeg(root / "images" / rel, (80 * c, 40 * i % 255, 200 - 50 * c))
            images.append(rel)
            labels.append(c)
            split.append(1 if i < train_per_class else 0)
    (root / "images.txt").write_text("".join(f"{i} {p}\n" for i, p in enumerate(images, 1)))
    (root / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(labels, 1)))
    (root / "train_test_split.txt").write_text("".join(f"{i} {s}\n" for i, s in enumerate(split, 1)))
    (root / "classes.txt").write_text("".join(f"{c} {n}\n" for c, n in enumerate(CUB_CLASSES, 1)))
    return root


def make_flowers(root, classes=3, per_split=(6, 2, 3)):
    import numpy as np
    from scipy.io import savemat

    labels, ids = [], {"trnid": [], "valid": [], "tstid": []}
    n = 0
    for c in range(classes):
        for key, count in zip(ids, per_split):
            for _ in range(count):
                n += 1
                _jpeg(root / "jpg" / f"image_{n:05d}.jpg", (60 * c + 30, 120, 90 * c % 255))
                labels.append(c + 1)
                ids[key].append(n)
    savemat(root / "imagelabels.mat", {"labels": np.array([labels])})
    savemat(root / "setid.mat", {k: np.array([v]) for k, v in ids.items()})
    return root


def make_flowers_coop(root, classes=3, per_split=(17, 2, 1)):
    """Flowers102 as CoOp ships it: jpg/ and split_zhou_OxfordFlowers.json, no .mat files."""
    import json

    from raysynth.data.flowers import NAMES

    split, n = {"train": [], "val": [], "test": []}, 0
    for c in range(classes):
        for key, count in zip(split, per_split):
            for i in range(count):
                n += 1
                _jpeg(root / "jpg" / f"image_{n:05d}.jpg", (60 * c + 30, 7 * i % 255, 90 * c % 255))
                split[key].append([f"image_{n:05d}.jpg", c, NAMES[c]])
    (root / "split_zhou_OxfordFlowers.json").write_text(json.dumps(split))
    return root


