"""Two searches at once on one machine, each from a working directory deleted afterwards.

Before: the second search attached (Ray's legacy ``address="auto"``) to the first one's
private cluster and died when the first ended; MLflow artifacts went to ``./mlruns`` of
the working directory, which ``ray job submit`` deletes after the job. Then, with both
on their own clusters, Ray Train's placement-group cleaner in each (its trial is a
2-worker TorchTrainer here) asked the state API for the cluster "auto", found two Ray
instances and printed a traceback at the end of the console.
"""

import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, tiny_overrides
from mlflow.tracking import MlflowClient

from raysynth.tracking.mlflow_runs import KIND_TAG


def _home(tmp_path, name, session_home):
    """A home of its own, seeded with the session's cached backbone and pools (when an
    earlier test made them) so the test pays for the searches, not for pretraining."""
    home = tmp_path / name
    for cached in ("weights", "pools"):
        if (session_home / cached).is_dir():
            shutil.copytree(session_home / cached, home / cached)
    home.mkdir(exist_ok=True)
    return home


@pytest.mark.story
def test_two_searches_share_a_machine_and_keep_their_artifacts(tmp_path, raysynth_home):
    sets = tiny_overrides() + ["train.epochs=1", "search.trials=1", "search.concurrency=1", "search.final_eval=false",
                               "train.workers=2"]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    searches = {}
    for name in ("first", "second"):
        home, cwd = _home(tmp_path, f"home-{name}", raysynth_home), tmp_path / f"cwd-{name}"
        cwd.mkdir()
        cmd = [sys.executable, str(REPO / "jobs" / "search.py"), "--name", name, "--experiment", "shared",
               *[a for s in sets for a in ("--set", s)]]
        log = open(tmp_path / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, cwd=cwd, env={**env, "RAYSYNTH_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT)
        searches[name] = (proc, home, cwd, log)
    for name, (proc, home, cwd, log) in searches.items():
        code = proc.wait(timeout=600)
        log.close()
        output = (tmp_path / f"{name}.log").read_text()
        assert code == 0, f"{name}: exit {code}\n{output[-4000:]}"
        assert "Connecting to existing Ray cluster" not in output, f"{name} attached to another cluster"
        # the cleaner's traceback (and none through raysynth's code); Ray's own transient
        # warnings of an overloaded machine (two clusters on 2 cores) may carry one
        assert "multiple active Ray instances" not in output and "placement_group_cleaner" not in output, output[-4000:]
        assert f'File "{REPO / "raysynth"}' not in output, f"{name}:\n{output[-4000:]}"
        assert "the search left" not in output, f"{name} left a placement group behind:\n{output[-2000:]}"
        shutil.rmtree(cwd)  # what `ray job submit` does to a job's working directory

    spans = []
    for name, (_, home, _, _) in searches.items():
        client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
        exp = client.get_experiment_by_name("shared")
        assert exp.artifact_location.startswith((home / "artifacts").as_uri())
        (parent,) = client.search_runs([exp.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'search'")
        assert parent.info.status == "FINISHED"
        spans.append((parent.info.start_time, parent.info.end_time))
        out = tmp_path / f"download-{name}"
        out.mkdir()
        report = client.download_artifacts(parent.info.run_id, "report.html", str(out))
        assert "<html" in open(report).read().lower()
        pngs = [a.path for a in client.list_artifacts(parent.info.run_id) if a.path.endswith(".png")]
        assert pngs, "no plot logged"
        png = client.download_artifacts(parent.info.run_id, pngs[0], str(out))
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1, "the two searches did not run at the same time"
