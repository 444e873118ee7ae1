"""Trial and driver faults: retries from checkpoints, NaN losses, a killed driver resumed.

Every fault here is real: a trial's process is SIGKILLed, a learning rate makes the
loss NaN, the search driver is SIGKILLed and run again with --resume.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, tiny_overrides
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from raysynth.search.options import SearchOptions
from raysynth.search.run import run_search
from raysynth.tracking.mlflow_runs import KIND_TAG, STATUS_TAG
from raysynth.validate import load_config

FIFO = ["search.final_eval=false", "search.scheduler.name=fifo"]


def _children(tracking_uri: str, experiment: str):
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return client, [r for r in runs if r.data.tags.get(KIND_TAG) == "trial"]


def _trial_epochs(storage: Path, name: str, trial_id: str) -> list[int]:
    """Every epoch the trial's process reported, in order (Tune's result.json)."""
    (trial_dir,) = [d for d in (storage / name).iterdir() if d.is_dir() and trial_id in d.name]
    lines = (trial_dir / "result.json").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines if line.strip()]


class KillOnce(Callback):
    """SIGKILLs the process of the first trial whose ``epoch`` checkpoint Tune registered."""

    def __init__(self, epoch: int):
        self.epoch, self.victim, self.last = epoch, None, {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.last[trial.trial_id] = (result.get("epoch"), result["pid"])

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        epoch, pid = self.last[trial.trial_id]
        if self.victim is None and epoch == self.epoch:
            self.victim = trial.trial_id
            os.kill(pid, signal.SIGKILL)


def test_a_killed_trial_process_is_retried_from_its_last_checkpoint(ray_session, tmp_path):
    config = load_config(
        REPO / "search_spaces" / "digits.yaml",
        tiny_overrides() + FIFO + ["train.epochs=4", "search.max_failures=1"],
    )
    kill = KillOnce(epoch=2)
    options = SearchOptions(f"sqlite:///{tmp_path / 'm.db'}", "faults", tmp_path / "tune", "killed-trial", callbacks=[kill])
    summary = run_search(config, options)
    assert kill.victim is not None and summary.trials == 2  # the search went on and both trials count

    # the retried trial continued after its epoch-2 checkpoint: epoch 1 ran once
    epochs = _trial_epochs(tmp_path / "tune", "killed-trial", kill.victim)
    assert epochs.count(1) == 1 and epochs.count(2) == 1 and epochs[-1] == 4, epochs

    client, children = _children(options.tracking_uri, "faults")
    assert len(children) == 2  # the retry kept its MLflow run
    (victim,) = [r for r in children if r.data.tags["raysynth.trial_id"] == kill.victim]
    assert victim.info.status == "FINISHED" and victim.data.tags[STATUS_TAG] == "finished"
    assert victim.data.tags["raysynth.retries"] == "1" and victim.data.tags["raysynth.last_error"]
    assert [m.step for m in client.get_metric_history(victim.info.run_id, "val_acc")] == [1, 2, 3, 4]
    assert victim.data.tags["raysynth.node"]


def test_a_nan_loss_fails_the_trial_at_its_step_and_the_search_goes_on(ray_session, tmp_path):
    """lr=1e12 makes the loss NaN at step 2 of epoch 1; that trial is retried, fails
    again, and is recorded as failed with its reason; the other trial finishes."""
    config = load_config(
        REPO / "search_spaces" / "digits.yaml",
        tiny_overrides() + FIFO + ["search.max_failures=1", "search.algorithm=random", "search.seed=1"],
    )
    config.search.space = {"train.lr": {"type": "choice", "values": [2e-3, 1e12]}}
    options = SearchOptions(f"sqlite:///{tmp_path / 'm.db'}", "nan", tmp_path / "tune", "nan")
    summary = run_search(config, options)
    client, children = _children(options.tracking_uri, "nan")
    lrs = sorted(float(r.data.params["train.lr"]) for r in children)
    assert lrs == [2e-3, 1e12], "the sampler must draw both learning rates for this test"
    (bad,) = [r for r in children if float(r.data.params["train.lr"]) == 1e12]
    (good,) = [r for r in children if r is not bad]
    assert bad.info.status == "FAILED" and bad.data.tags[STATUS_TAG] == "failed"
    assert "epoch 1, step 2: non-finite loss nan" in bad.data.tags["raysynth.error"]
    assert bad.data.tags["raysynth.retries"] == "1"
    assert "val_acc" not in bad.data.metrics  # it failed before it finished an epoch
    assert good.info.status == "FINISHED" and good.data.tags[STATUS_TAG] == "finished"
    assert summary.trials == 1 and summary.best_val_acc == pytest.approx(good.data.metrics["val_acc"])


def _search_cmd(tmp_path: Path, *extra: str) -> list[str]:
    sets = tiny_overrides() + FIFO + [
        "train.epochs=3", "search.trials=4", "search.algorithm=skopt-gp", "search.initial_points=2",
    ]
    return [
        sys.executable, str(REPO / "jobs" / "search.py"), "--storage", str(tmp_path / "tune"), "--name", "resumed",
        "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--experiment", "resume",
        *[a for s in sets for a in ("--set", s)], *extra,
    ]


@pytest.mark.story
def test_a_killed_driver_resumes_without_rerunning_or_duplicating(ray_session, tmp_path):
    """The driver (attached to this session's Ray) is SIGKILLed once two trials have
    finished; the same command submitted again (`--resume auto`, as a RayJob retry runs
    it) finishes the search: the finished trials are neither re-run nor logged twice,
    and the skopt searcher continues from its saved state. The first run, with nothing
    to resume, started the search."""
    # named, as a user attaches a driver to a running cluster (it never attaches by itself)
    env = {**os.environ, "RAY_ADDRESS": ray_session.get_runtime_context().gcs_address}
    proc = subprocess.Popen(_search_cmd(tmp_path, "--resume", "auto"), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    try:
        deadline = time.time() + 300
        finished = []
        while time.time() < deadline and proc.poll() is None:
            if (tmp_path / "tune" / "resumed" / "raysynth_parent_run.json").exists():  # MLflow store made
                _, children = _children(uri, "resume")
                finished = [r for r in children if r.data.tags.get(STATUS_TAG) == "finished"]
                if len(finished) >= 2:
                    break
            time.sleep(0.5)
        assert proc.poll() is None, "the search ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    time.sleep(3)  # Ray ends the dead driver's trial actors
    assert len(finished) >= 2
    client, before = _children(uri, "resume")
    assert len(before) < 4 or any(r.info.status == "RUNNING" for r in before)
    done_before = {r.data.tags["raysynth.trial_id"]: r.info.run_id for r in finished}

    out = subprocess.run(_search_cmd(tmp_path, "--resume", "auto"), cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "--resume auto: resuming the search 'resumed'" in out.stdout + out.stderr

    client, children = _children(uri, "resume")
    ids = [r.data.tags["raysynth.trial_id"] for r in children]
    assert len(ids) == 4 and len(set(ids)) == 4  # every trial once: no duplicated run
    assert all(r.info.status == "FINISHED" and r.data.tags[STATUS_TAG] == "finished" for r in children)
    for trial_id, run_id in done_before.items():
        assert {r.data.tags["raysynth.trial_id"]: r.info.run_id for r in children}[trial_id] == run_id
        assert [m.step for m in client.get_metric_history(run_id, "val_acc")] == [1, 2, 3]
        assert _trial_epochs(tmp_path / "tune", "resumed", trial_id) == [1, 2, 3]  # not re-run
    parents = [r for r in client.search_runs([children[0].info.experiment_id]) if r.data.tags.get(KIND_TAG) == "search"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"

    # the skopt searcher was restored (one restart) and has told all four trials
    # one state file per driver session, named by the session's start time
    states = sorted((tmp_path / "tune" / "resumed").glob("searcher-state-*.pkl"))
    assert len(states) == 2
    state = json.loads(states[-1].read_text())
    assert state["restarts"] == 1 and len(state["told"]) == 4
    points = [json.dumps(p) for p in state["proposed"]]
    assert len(points) == 4 and len(set(points)) == 4
