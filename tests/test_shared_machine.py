"""Two searches at once on one machine, each from a working directory deleted afterwards:
one with a local RAYSYNTH_HOME, one with RAYSYNTH_HOME and --storage in S3 (a real
S3-compatible server on 127.0.0.1), which is then resumed from the bucket.

Before: the second search attached (Ray's legacy ``address="auto"``) to the first one's
private cluster and died when the first ended; MLflow artifacts went to ``./mlruns`` of
the working directory, which ``ray job submit`` deletes after the job; ``--storage
s3://bucket/x`` became a local directory ``./s3:/bucket/x``.
"""

import datetime
import os
import re
import shutil
import subprocess
import sys
import time

from conftest import REPO, S3_BUCKET, s3_keys, tiny_overrides
from mlflow.tracking import MlflowClient

from raysynth.tracking.mlflow_runs import KIND_TAG


def _ray_started(log) -> float:
    """When a search's log says its private Ray instance started (epoch seconds)."""
    line = next(line for line in log.read_text().splitlines() if "Started a local Ray instance" in line)
    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _home(tmp_path, name, session_home):
    """A home of its own, seeded with the session's cached backbone and pools (when an
    earlier test made them) so the test pays for the searches, not for pretraining."""
    home = tmp_path / name
    for cached in ("weights", "pools"):
        if (session_home / cached).is_dir():
            shutil.copytree(session_home / cached, home / cached)
    home.mkdir(exist_ok=True)
    return home


def test_two_searches_share_a_machine_and_keep_their_artifacts(tmp_path, raysynth_home, s3_server, monkeypatch):
    sets = tiny_overrides() + ["train.epochs=1", "search.trials=1", "search.concurrency=1", "search.final_eval=false"]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    cache = tmp_path / "cache"  # the S3 search's local copies (RAYSYNTH_CACHE)
    homes = {
        "first": {"RAYSYNTH_HOME": str(_home(tmp_path, "home-first", raysynth_home))},
        "second": {**s3_server, "RAYSYNTH_HOME": f"s3://{S3_BUCKET}/home", "RAYSYNTH_CACHE": str(cache)},
    }
    searches = {}
    for name, home in homes.items():
        cwd = tmp_path / f"cwd-{name}"
        cwd.mkdir()
        storage = ["--storage", f"s3://{S3_BUCKET}/tune"] if name == "second" else []
        cmd = [sys.executable, str(REPO / "jobs" / "search.py"), "--name", name, "--experiment", "shared", *storage,
               *[a for s in sets for a in ("--set", s)]]
        log = open(tmp_path / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, cwd=cwd, env={**env, **home}, stdout=log, stderr=subprocess.STDOUT)
        searches[name] = (proc, cmd, cwd, log)
    ended = {}  # when each search's process exited (its private Ray instance ends with it)
    deadline = time.time() + 600
    while len(ended) < len(searches) and time.time() < deadline:
        ended.update({name: time.time() for name, (proc, *_) in searches.items() if name not in ended and proc.poll() is not None})
        time.sleep(0.2)
    for name, (proc, _, cwd, log) in searches.items():
        code = proc.wait(timeout=5)
        log.close()
        output = (tmp_path / f"{name}.log").read_text()
        assert code == 0, f"{name}: exit {code}\n{output[-4000:]}"
        assert "Connecting to existing Ray cluster" not in output, f"{name} attached to another cluster"
        shutil.rmtree(cwd)  # what `ray job submit` does to a job's working directory
        assert not (cwd.parent / "s3:").exists()  # a URI never becomes a local directory

    for k, v in s3_server.items():  # MLflow downloads the S3 search's artifacts with boto3
        monkeypatch.setenv(k, v)
    (local_cache,) = cache.iterdir()
    stores = {"first": homes["first"]["RAYSYNTH_HOME"], "second": str(local_cache)}
    for name, database_dir in stores.items():
        client = MlflowClient(f"sqlite:///{database_dir}/mlflow.db")
        exp = client.get_experiment_by_name("shared")
        where = f"s3://{S3_BUCKET}/home/artifacts/" if name == "second" else f"{database_dir}/artifacts/"
        assert exp.artifact_location.replace("file://", "").startswith(where), exp.artifact_location
        (parent,) = client.search_runs([exp.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'search'")
        assert parent.info.status == "FINISHED"
        out = tmp_path / f"download-{name}"
        out.mkdir()
        report = client.download_artifacts(parent.info.run_id, "report.html", str(out))
        assert "<html" in open(report).read().lower()
        pngs = [a.path for a in client.list_artifacts(parent.info.run_id) if a.path.endswith(".png")]
        assert pngs, "no plot logged"
        png = client.download_artifacts(parent.info.run_id, pngs[0], str(out))
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # each had its own Ray instance up while the other ran, and outlived the other's end
    started = {name: _ray_started(tmp_path / f"{name}.log") for name in searches}
    assert started["second"] < ended["first"] and started["first"] < ended["second"], (started, ended)

    # what every node needs is in the bucket: the backbone, the pool (complete, the shards
    # the actors uploaded gone), Tune's state and raysynth's records
    home = s3_keys(s3_server, "home/")
    assert any(k.startswith("home/weights/") and k.endswith(".pt") for k in home), home
    pools = {k.split("/")[2] for k in home if k.startswith("home/pools/") and k.endswith("/meta.json")}
    assert len(pools) == 1 and f"home/pools/{pools.pop()}/.published" in home
    assert not [k for k in home if "/.work-" in k]
    tune = s3_keys(s3_server, "tune/second/")
    assert {"tune/second/raysynth_config.json", "tune/second/raysynth_parent_run.json"} <= set(tune)
    assert any("experiment_state" in k for k in tune)

    # --resume restores the search from the bucket, on a node whose local copies are gone
    shutil.rmtree(local_cache / "pools")
    cwd = tmp_path / "cwd-resume"
    cwd.mkdir()
    proc, cmd, _, _ = searches["second"]
    again = subprocess.run([*cmd, "--resume"], cwd=cwd, env={**env, **homes["second"]}, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    first_parent = re.search(r"parent run (\w+)", (tmp_path / "second.log").read_text()).group(1)
    assert f"parent run {first_parent}" in again.stdout
