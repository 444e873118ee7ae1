"""`ray job submit` of jobs/search.py against a local head started from the project's venv.

Also the console: Ray's per-checkpoint lines reach it with ``--verbose`` only; without,
they are in ``raysynth-ray-<pid>.log`` among the head's logs.

The submitted job and a plain `python jobs/search.py` run (which attaches to the same
head) must land in the same MLflow store: RAYSYNTH_HOME is absolute, not the job's
temporary working directory.
"""

import json
import os
import pytest
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import REPO, run_job, tiny_overrides
from mlflow.tracking import MlflowClient

from raysynth.testing.fake_cluster import free_port as _free_port
from raysynth.testing.fake_cluster import stop_processes as _stop_head  # exactly this test's processes, not `ray stop`


@pytest.mark.story
def test_ray_job_submit_lands_in_the_same_store(tmp_path, raysynth_home):
    bin_dir = Path(sys.executable).parent
    # new clusters use token auth; the clients must be told to send the token
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RAYSYNTH_HOME": str(raysynth_home),
           "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    gcs, dashboard = _free_port(), _free_port()
    temp_dir = Path(tempfile.mkdtemp(prefix="rsh-ray-", dir="/tmp"))  # Ray's socket paths must stay short
    # a head with no GPU, and a second node (its own temp dir, as on another machine)
    # declaring 2 GPUs the machine does not have: the search's GPU work goes there
    started = subprocess.run(
        [str(bin_dir / "ray"), "start", "--head", f"--port={gcs}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={_free_port()}", "--num-cpus=1", "--num-gpus=0",
         "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    worker_dir = Path(tempfile.mkdtemp(prefix="rsw-ray-", dir="/tmp"))
    address = f"http://127.0.0.1:{dashboard}"
    # one trial of one epoch each: the subject is where the runs land, not the search
    args = [f"--set={o}" for o in tiny_overrides()] + ["--set=train.epochs=1", "--set=search.trials=1", "--set=search.final_eval=false",
                                                       "--set=resources.fake_gpus=true", "--experiment=submitted"]
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        joined = subprocess.run(
            [str(bin_dir / "ray"), "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=2", "--num-gpus=2",
             f"--dashboard-agent-listen-port={_free_port()}", "--disable-usage-stats", f"--temp-dir={worker_dir}"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert joined.returncode == 0, joined.stderr[-2000:]
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
             "--", "python", "jobs/search.py", "--name=submitted-run", "--verbose", *args],
            env=env, capture_output=True, text=True, timeout=600,
        )
        assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-2000:]
        assert "search finished" in submitted.stdout

        plain = run_job(["--name=plain-run", f"--storage={tmp_path / 'tune'}", *args],
                        env={"RAYSYNTH_HOME": str(raysynth_home), "RAY_ADDRESS": f"127.0.0.1:{gcs}", "RAY_AUTH_MODE": "token"})
        assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-2000:]
        assert "Connected to Ray cluster" in plain.stdout + plain.stderr  # attached, did not start its own
        # Ray's per-checkpoint chatter: on the console with --verbose, else in a log file
        chatter = "Checkpoint successfully created"
        assert chatter in submitted.stdout + submitted.stderr
        assert chatter not in plain.stdout + plain.stderr and "trial " in plain.stdout
        # (the trials ran on the GPU node: its own logs, as on another machine)
        kept = [*(temp_dir / "session_latest" / "logs").glob("raysynth-ray-*.log"),
                *(worker_dir / "session_latest" / "logs").glob("raysynth-ray-*.log")]
        assert any(chatter in f.read_text() for f in kept)
        # what `--working-dir .` uploaded, as the job's node extracted it: no .git, no .venv
        (package,) = {p.parents[1] for p in temp_dir.glob("session_latest/runtime_resources/working_dir_files/*/jobs/search.py")}
        assert (package / "raysynth" / "cli.py").is_file()
        assert not (package / ".git").exists() and not (package / ".venv").exists()
    finally:
        _stop_head(str(worker_dir))
        _stop_head(str(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(worker_dir, ignore_errors=True)

    client = MlflowClient(f"sqlite:///{raysynth_home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("submitted")
    parents = client.search_runs([exp.experiment_id], filter_string="tags.`raysynth.kind` = 'search'")
    assert sorted(r.info.run_name for r in parents) == ["plain-run", "submitted-run"]
    assert all(r.info.status == "FINISHED" for r in parents)
    by_name = {r.info.run_name: r for r in parents}
    # where each ran: the submitted job's id (and the head's dashboard) are tags; the plain run has no submission
    assert by_name["submitted-run"].data.tags["raysynth.ray_job_submission_id"].startswith("raysubmit_")
    assert "raysynth.ray_job_submission_id" not in by_name["plain-run"].data.tags
    # the trials ran on the node with the GPUs, the parent's report downloads after the job
    trials = client.search_runs([exp.experiment_id], filter_string="tags.`raysynth.kind` = 'trial'")
    assert trials and all(r.data.tags["raysynth.gpu_ids"] for r in trials)
    report = client.download_artifacts(by_name["submitted-run"].info.run_id, "report.html", str(tmp_path))
    assert "<html" in Path(report).read_text().lower()
    assert by_name["plain-run"].data.tags["raysynth.ray_dashboard"].startswith("http://127.0.0.1:")
    # Tune's table of every trial, as an artifact of the parent run
    table = client.download_artifacts(by_name["submitted-run"].info.run_id, "trials.csv", str(tmp_path))
    lines = Path(table).read_text().splitlines()
    assert len(lines) == 1 + 1 and "val_acc" in lines[0]  # header + the one trial
