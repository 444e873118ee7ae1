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
def ray_session(raysynth_home):
    """One local Ray instance shared by every test that needs Ray; shut down at the end."""
    import ray

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
        "search.trials=2",
        "search.concurrency=2",
        "search.scheduler.grace_period=1",
    ]


@pytest.fixture
def tiny_config():
    from raysynth.config import load_config

    return load_config(REPO / "search_spaces" / "digits.yaml", tiny_overrides())


def run_job(args: list[str], env: dict | None = None, timeout: int = 600):
    import subprocess

    return subprocess.run(
        [sys.executable, str(REPO / "jobs" / "search.py"), *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=REPO,
    )


def pytest_collection_modifyitems(config, items):
    """Order the Ray tests. Ray Data generation first: on this 2-CPU machine a Ray Data
    actor pool started after Ray Train/Tune runs in the same session waits forever for
    its CPUs (a known gap, left to the generation issue). The `ray job submit` test
    last: it starts and stops a second Ray cluster on the machine. Before it, the trial
    that runs a 2-worker TorchTrainer inside Tune: its worker group can outlive the trial
    and hold the session's CPUs (left open in the closing note)."""

    def rank(item) -> int:
        if "test_pool" in item.nodeid or "test_pipeline" in item.nodeid:
            return 0
        if "two_workers" in item.nodeid:
            return 2
        return 3 if "test_job_submit" in item.nodeid else 1

    items.sort(key=rank)
