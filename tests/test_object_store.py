"""RAYSYNTH_HOME and --storage in an object store (s3://), against a real S3-compatible
server: moto in server mode on 127.0.0.1, started here and stopped by its PID.

Before: ``--storage s3://bucket/x`` silently became a local directory ``./s3:/bucket/x``
and nothing a node made could be seen by another.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import REPO, tiny_overrides

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")

BUCKET = "raysynth-test"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """The endpoint and credentials of a fresh moto S3 server with one bucket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"moto server did not start (exit {proc.poll()})") from None
                time.sleep(0.3)
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _keys(env, prefix):
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _search(args, env, cwd):
    """The job script in its own Ray (its workers inherit the S3 endpoint and credentials)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "RAYSYNTH_HOME")}
    return subprocess.run([sys.executable, str(REPO / "jobs" / "search.py"), *args], capture_output=True, text=True,
                          timeout=600, env={**clean, **env}, cwd=cwd)


def test_a_search_with_home_and_storage_in_s3_finishes_and_resumes(tmp_path, s3_server):
    cache = tmp_path / "cache"
    env = {**s3_server, "RAYSYNTH_HOME": f"s3://{BUCKET}/home", "RAYSYNTH_CACHE": str(cache)}
    sets = tiny_overrides() + ["train.epochs=1", "search.trials=2", "search.concurrency=2", "pool.actors=2", "pool.shard_size=24"]
    args = ["--name", "in-s3", "--storage", f"s3://{BUCKET}/tune", *[a for s in sets for a in ("--set", s)]]
    first = _search(args, env, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert not (tmp_path / "s3:").exists()  # a URI never becomes a local directory

    # what every node needs is in the bucket: backbone weights, the pool, Tune's state and
    # raysynth's records, MLflow's artifacts; the shards the actors uploaded are gone
    home = _keys(s3_server, "home/")
    assert any(k.startswith("home/weights/") and k.endswith(".pt") for k in home), home
    pools = {k.split("/")[2] for k in home if k.startswith("home/pools/") and k.endswith("/meta.json")}
    assert len(pools) == 1 and f"home/pools/{next(iter(pools))}/.published" in home
    assert not [k for k in home if "/.work-" in k]
    assert any(k.endswith("/report.html") for k in home if k.startswith("home/artifacts/"))
    tune = _keys(s3_server, "tune/in-s3/")
    assert "tune/in-s3/raysynth_config.json" in tune and "tune/in-s3/raysynth_parent_run.json" in tune
    assert any("experiment_state" in k for k in tune)
    assert _keys(s3_server, "tune/in-s3-final-best/"), "final training checkpoints not in the bucket"
    parent = re.search(r"parent run (\w+)", first.stdout).group(1)

    # this node loses its local copies (a new node, a cleaned cache): --resume restores
    # Tune's state from the bucket and the finals fetch the pool and weights again
    for local in ("weights", "pools", "partitions"):
        shutil.rmtree(next(cache.iterdir()) / local, ignore_errors=True)
    again = _search([*args, "--resume"], env, tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"parent run {parent}" in again.stdout
    assert "fetching s3://" in again.stdout + again.stderr
    assert list((next(cache.iterdir()) / "pools").glob("*/meta.json")), "the pool was not fetched back"


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
