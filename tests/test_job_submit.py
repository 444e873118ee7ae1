"""`ray job submit` of jobs/search.py against a local head started from the project's venv.

The submitted job and a plain `python jobs/search.py` run (which attaches to the same
head) must land in the same MLflow store: RAYSYNTH_HOME is absolute, not the job's
temporary working directory.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from conftest import REPO, run_job, tiny_overrides


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_lands_in_the_same_store(tmp_path, raysynth_home):
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RAYSYNTH_HOME": str(raysynth_home)}
    env.pop("RAY_ADDRESS", None)
    gcs, dashboard = _free_port(), _free_port()
    # --block keeps `ray start` in the foreground: terminating it stops exactly this head
    head = subprocess.Popen(
        [str(bin_dir / "ray"), "start", "--head", "--block", f"--port={gcs}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={_free_port()}", "--num-cpus=2",
         "--disable-usage-stats", f"--temp-dir={tmp_path / 'ray'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    address = f"http://127.0.0.1:{dashboard}"
    args = [f"--set={o}" for o in tiny_overrides()] + ["--set=train.epochs=1", "--set=search.final_eval=false", "--experiment=submitted"]
    try:
        deadline = time.time() + 90
        while True:  # wait for the job server to answer
            status = subprocess.run([str(bin_dir / "ray"), "job", "list", "--address", address], env=env, capture_output=True, text=True)
            if status.returncode == 0:
                break
            assert time.time() < deadline, f"Ray head did not come up: {status.stderr[-500:]}"
            time.sleep(2)
        submitted = subprocess.run(
            [str(bin_dir / "ray"), "job", "submit", "--address", address, "--working-dir", str(REPO),
             "--runtime-env-json", json.dumps({"env_vars": {"RAYSYNTH_HOME": str(raysynth_home)}}),
             "--", "python", "jobs/search.py", "--name=submitted-run", *args],
            env=env, capture_output=True, text=True, timeout=600,
        )
        assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-2000:]
        assert "search finished" in submitted.stdout

        plain = run_job(["--name=plain-run", f"--storage={tmp_path / 'tune'}", *args],
                        env={"RAYSYNTH_HOME": str(raysynth_home), "RAY_ADDRESS": f"127.0.0.1:{gcs}"})
        assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-2000:]
    finally:
        head.terminate()
        head.wait(timeout=60)

    client = MlflowClient(f"sqlite:///{raysynth_home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("submitted")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`raysynth.kind` = 'search'")
    assert sorted(r.info.run_name for r in parents) == ["plain-run", "submitted-run"]
    assert all(r.info.status == "FINISHED" for r in parents)
