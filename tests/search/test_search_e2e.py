"""A tiny real search end to end: Ray Tune + Optuna + ASHA + MLflow, on the session's Ray."""

import optuna
import pytest
from conftest import REPO, tiny_overrides
from mlflow.tracking import MlflowClient

from raysynth.search.options import SearchOptions
from raysynth.search.run import run_search
from raysynth.tracking.leaderboard import format_rows, leaderboard_rows
from raysynth.tracking.mlflow_runs import KIND_TAG, PARENT_TAG, STATUS_TAG
from raysynth.validate import load_config


def _search(tmp_path, name, extra=(), experiment="e2e"):
    config = load_config(REPO / "search_spaces" / "digits.yaml", tiny_overrides() + ["train.epochs=1", "search.final_eval=false", *extra])
    options = SearchOptions(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment, tmp_path / "tune", name)
    return config, options, run_search(config, options)


def test_search_writes_parent_and_child_runs(ray_session, tmp_path):
    config, options, summary = _search(tmp_path, "e2e-search", ["search.algorithm=optuna-tpe"])
    assert summary.trials == 2
    client = MlflowClient(options.tracking_uri)
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get(KIND_TAG) == "search"]
    children = [r for r in runs if r.data.tags.get(KIND_TAG) == "trial"]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_val_acc"] == pytest.approx(summary.best_val_acc)
    assert parent.data.params["train.epochs"] == "1"
    assert any(k.startswith("system/cpu_utilization") for k in parent.data.metrics)  # MLflow's system metrics
    (used,) = client.get_run(parent.info.run_id).inputs.dataset_inputs  # the split as MLflow's dataset input
    assert used.dataset.name == "digits-2shot" and used.dataset.digest == parent.data.tags["raysynth.dataset_fingerprint"][:36]
    for child in children:
        assert child.data.tags[PARENT_TAG] == parent.info.run_id
        assert child.data.tags[STATUS_TAG] == "finished"
        assert {f"w/{c}" for c in ("five", "six", "seven", "eight", "nine")} <= set(child.data.params)
        assert "val_acc" in child.data.metrics and "train.lr" in child.data.params
    # the summary's best is the best child's last validation accuracy, a count over the 5 x 80 images
    assert summary.best_val_acc == pytest.approx(max(c.data.metrics["val_acc"] for c in children))
    assert summary.best_val_acc * 400 == pytest.approx(round(summary.best_val_acc * 400), abs=1e-4)
    history = client.get_metric_history(children[0].info.run_id, "val_acc")
    assert [m.step for m in history] == [1]

    # the leaderboard orders the finished trials by validation accuracy
    rows = leaderboard_rows(options.tracking_uri, "e2e")
    assert [r["val_acc"] for r in rows] == sorted((c.data.metrics["val_acc"] for c in children), reverse=True)
    assert rows[0]["val_acc"] == pytest.approx(summary.best_val_acc)
    assert len(leaderboard_rows(options.tracking_uri, "e2e", top=1)) == 1
    table = format_rows(rows, "table").splitlines()
    assert table[0].split()[:2] == ["#", "run_name"] and len(table) == 4
    assert format_rows(rows, "csv").splitlines()[0].startswith("run_id,run_name")

    # the Optuna study is on disk, named after the search: optuna.load_study and
    # optuna-dashboard read it; the report shows its parameter importances
    study = optuna.load_study(study_name="e2e-search", storage=f"sqlite:///{tmp_path / 'tune' / 'e2e-search' / 'optuna.db'}")
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 2
    assert "param_importance.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    _dashboard_serves(tmp_path, "e2e-search")


def _dashboard_serves(tmp_path, name):
    """`raysynth dashboard` starts optuna-dashboard on 127.0.0.1 over the search's study."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "raysynth"), "dashboard", "--name", name, "--storage", str(tmp_path / "tune"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert f"http://127.0.0.1:{port}/dashboard/" in server.stdout.readline()
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.loads(response.read())["study_summaries"]
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "optuna-dashboard did not answer"
                time.sleep(0.5)
        assert [s["study_name"] for s in studies] == [name]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.story
def test_trial_with_two_workers_runs_torch_trainer(ray_session, tmp_path):
    """train.workers=2: each trial is a TorchTrainer (DDP over 2 CPU workers) inside Tune."""
    _, options, summary = _search(
        tmp_path, "e2e-ddp", ["train.workers=2", "search.trials=1", "search.concurrency=1"], experiment="ddp"
    )
    assert summary.trials == 1
    client = MlflowClient(options.tracking_uri)
    exp = client.get_experiment_by_name("ddp")
    children = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get(KIND_TAG) == "trial"]
    assert len(children) == 1 and "val_acc" in children[0].data.metrics
    assert (tmp_path / "tune" / f"trial-{children[0].data.tags['raysynth.trial_id']}").is_dir()


def test_search_over_bound_regularisers_and_cluster_counts(ray_session, tmp_path, raysynth_home):
    """The ICML 2025 loss in a search: λ1 searched with λ2 tied at 10·λ1, K searched as a
    multiple of the class count; partitions are computed before the trials, once per K."""
    extra = [
        "loss={bound: {lam2_ratio: 10}}",
        "search.space={}",
        "search.space.loss.bound.lam1={type: loguniform, low: 0.05, high: 2.0}",
        "search.space.partition.clusters_per_class={type: choice, values: [1, 2]}",
    ]
    before = set((raysynth_home / "partitions").glob("*.npz"))
    _, options, summary = _search(tmp_path, "e2e-bound", extra, experiment="bound")
    assert summary.trials == 2
    made = set((raysynth_home / "partitions").glob("*.npz")) - before
    assert len(made) == 2  # K = 5 and K = 10, whatever the trials drew
    client = MlflowClient(options.tracking_uri)
    exp = client.get_experiment_by_name("bound")
    children = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get(KIND_TAG) == "trial"]
    for child in children:
        assert {"loss.bound.lam1", "partition.clusters_per_class"} <= set(child.data.params)
        assert {"loss_discrepancy", "loss_robustness", "loss_ce_real", "loss_ce_syn"} <= set(child.data.metrics)
