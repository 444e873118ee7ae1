"""A real `mlflow server` on 127.0.0.1 (free port, sqlite store), a tiny search against
it, and everything read back through MLflow's REST API from this process."""

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, tiny_overrides

from raysynth.search.options import SearchOptions
from raysynth.search.run import run_search
from raysynth.tracking.leaderboard import compare_runs, leaderboard_rows
from raysynth.validate import load_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not come up")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _get(url: str, endpoint: str, **params):
    with urllib.request.urlopen(f"{url}{endpoint}?{urllib.parse.urlencode(params)}", timeout=30) as r:
        return r.read()


def _post(url: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"{url}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.story
def test_search_story_read_back_through_the_rest_api(ray_session, tmp_path, mlflow_server, raysynth_home, monkeypatch):
    # lr = 1e30 makes the loss non-finite at once: that trial must show up as failed, with its reason
    config = load_config(
        REPO / "search_spaces" / "digits.yaml",
        tiny_overrides()
        + ["search.space.train.lr={type: choice, values: [0.01, 1.0e+30]}", "search.algorithm=random", "search.trials=4",
           "train.epochs=1",  # what is read back does not need a second epoch
           "train.steps_per_epoch=12",  # ... but a model better than chance (its round trip below)
           # a non-finite loss fails at once (retries are tests/search/test_faults.py's subject)
           "search.final_seeds=1", "search.max_failures=0"],
    )  # fmt: skip
    options = SearchOptions(mlflow_server, "served", tmp_path / "tune", "served-search", register="served-digits")
    audit = raysynth_home / "audit" / "test_reads.jsonl"
    start = len(audit.read_text().splitlines()) if audit.exists() else 0
    summary = run_search(config, options)
    assert {f.label for f in summary.finals} == {"best", "real_only", "all_weights_1"}

    # the final models are scored on test once each, and only after the search chose
    events = [json.loads(line) for line in audit.read_text().splitlines()[start:]]
    finished = [e for e in events if e["event"] == "search_finished"]
    reads = [e for e in events if e["event"] == "test_read"]
    assert len(finished) == 1 and len(reads) == 3 and all(r["time"] > finished[0]["time"] for r in reads)
    _check_searched_model(summary, config, mlflow_server, tmp_path, monkeypatch)

    exp = json.loads(_get(mlflow_server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="served"))["experiment"]
    runs = _post(mlflow_server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 100})["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    parents = [r for r, t in zip(runs, tags) if t.get("raysynth.kind") == "search"]
    children = [(r, t) for r, t in zip(runs, tags) if t.get("raysynth.kind") == "trial"]
    assert len(parents) == 1 and len(children) == 4
    parent_id = parents[0]["info"]["run_id"]
    parent_metrics = {m["key"] for m in parents[0]["data"]["metrics"]}
    assert {"test_acc/best", "test_acc_std/best", "best_w/five", "best_val_acc"} <= parent_metrics
    assert all(t["mlflow.parentRunId"] == parent_id for _, t in children)
    assert {"raysynth.dataset", "raysynth.algorithm", "raysynth.objective"} <= set(tags[runs.index(parents[0])])

    failed = [(r, t) for r, t in children if t["raysynth.status"] == "failed"]
    assert failed and all("non-finite loss" in t["raysynth.error"] for _, t in failed)
    ok = [(r, t) for r, t in children if t["raysynth.status"] in ("finished", "pruned")]
    assert ok
    for run, _ in ok:
        params = {p["key"] for p in run["data"]["params"]}
        assert {"w/five", "w/nine", "train.lr"} <= params
        history = json.loads(_get(mlflow_server, "/api/2.0/mlflow/metrics/get-history", run_id=run["info"]["run_id"], metric_key="loss_ce_real"))["metrics"]
        assert [m["step"] for m in history] == list(range(1, len(history) + 1)) and history

    listing = json.loads(_get(mlflow_server, "/api/2.0/mlflow/artifacts/list", run_id=parent_id))
    files = {f["path"]: f for f in listing["files"]}
    pngs = ["weights.png", "real_vs_synthetic.png", "confusion_matrix.png", "history.png"]
    if sum(t["raysynth.status"] == "finished" for _, t in children) >= 2:
        pngs.append("parallel_coordinates.png")  # needs two finished trials to draw lines between
    assert set(pngs + ["report.html", "best_config.yaml"]) <= set(files)
    for name in pngs:
        data = _get(mlflow_server, "/get-artifact", path=name, run_uuid=parent_id)
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    text = _get(mlflow_server, "/get-artifact", path="best_config.yaml", run_uuid=parent_id).decode()
    (tmp_path / "best.yaml").write_text(text)
    assert load_config(tmp_path / "best.yaml").search.space == {}

    # the leaderboard is the test's own sort of the finished trials
    rows = leaderboard_rows(mlflow_server, "served")
    finished = [r for r, t in children if t["raysynth.status"] == "finished"]
    expected = sorted((next(m["value"] for m in r["data"]["metrics"] if m["key"] == "val_acc") for r in finished), reverse=True)
    assert [r["val_acc"] for r in rows] == expected
    across = leaderboard_rows(mlflow_server, None, tags={"dataset": "digits", "algorithm": "random"})
    assert all(r.pop("experiment") == "served" for r in across) and across == rows
    assert leaderboard_rows(mlflow_server, "served", tags={"algorithm": "skopt-gp"}) == []
    if len(ok) >= 2:
        diff = compare_runs(mlflow_server, ok[0][0]["info"]["run_id"], ok[1][0]["info"]["run_id"])
        assert any(d["field"] == "param:w/five" for d in diff)


def _check_searched_model(summary, config, url, tmp_path, monkeypatch):
    """The searched model: loaded from runs:/<parent>/model in a fresh process
    (`raysynth predict` on the test split written as PNG files), it reproduces the test
    accuracy logged for it; pyfunc's predict gives the same classes; the registry holds it."""
    import mlflow
    import numpy as np
    from PIL import Image

    from raysynth.context import split_of

    uri = f"runs:/{summary.parent_run_id}/model"
    assert summary.model_uri == uri
    logged = mlflow.MlflowClient(url).get_run(summary.parent_run_id).data.metrics["model_test_acc"]
    split = split_of(config)
    images = split.test.images  # digits: float in [0, 1]; as 8-bit images, what a file holds
    images = images.mul(255).round().clamp(0, 255).byte() if images.is_floating_point() else images
    images = images.permute(0, 2, 3, 1).numpy()  # N x H x W x 3 uint8
    labels = split.test.labels.numpy()
    folder = tmp_path / "test-images"
    for sub in ("a", "b"):  # a folder is searched recursively
        (folder / sub).mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / ("a" if i % 2 else "b") / f"{i:04d}.png")
    proc = subprocess.run(
        [sys.executable, "-m", "raysynth", "predict", "--model-uri", uri, "--tracking-uri", url, str(folder)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    assert len(lines) == len(labels) and all(len(parts) == 3 for parts in lines)
    predicted = {int(Path(path).stem): name for path, name, _ in lines}
    assert all(0.0 < float(prob) <= 1.0 for _, _, prob in lines)
    accuracy = np.mean([predicted[i] == split.classes[label] for i, label in enumerate(labels)])
    assert accuracy == pytest.approx(logged, abs=1e-6) and accuracy > 0.3  # (chance: 0.2)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # where runs:/ points, for this test only
    names = mlflow.pyfunc.load_model(uri).predict(images[:16])
    assert list(names) == [predicted[i] for i in range(16)]
    versions = mlflow.MlflowClient(url).search_model_versions("name='served-digits'")
    assert [v.run_id for v in versions] == [summary.parent_run_id]
