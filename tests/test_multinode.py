"""A search on a two-node Ray cluster (Ray's own ``ray.cluster_utils.Cluster``, as in
Ray's test-suite): trials land on both nodes, the second node is removed mid-search,
and the search finishes with every trial accounted for.

The cluster runs in a subprocess: it is a second Ray cluster next to the session's.
"""

import json
import os
import pytest
import subprocess
import sys

from conftest import REPO, tiny_overrides

SCRIPT = r"""
import json, sys
from collections import defaultdict
from pathlib import Path

import ray
from ray.cluster_utils import Cluster
from ray.tune import Callback, ExperimentAnalysis

from raysynth.validate import load_config
from raysynth.search.options import SearchOptions
from raysynth.search.run import run_search

out, repo, overrides = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
second = cluster.add_node(num_cpus=1, resources={"node2": 1})
ray.init(address=cluster.address, log_to_driver=False)
head_id, second_id = cluster.head_node.node_id, second.node_id


class RemoveSecondNode(Callback):
    # once a trial on the second node has reported its first epoch, that node goes away
    # (four epochs still to run: tiny epochs are fast, and Tune may hand the callback a
    # result after the trial has moved on)
    def __init__(self):
        self.nodes, self.victim = defaultdict(list), None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.nodes[trial.trial_id].append(result["node"])
        if self.victim is None and result["node"] == second_id and result["epoch"] == 1:
            self.victim = trial.trial_id
            # through the module: Tune pickles its callbacks, and a Cluster does not pickle
            main = sys.modules["__main__"]
            main.cluster.remove_node(main.second, allow_graceful=False)


def alive_nodes(timeout=60):
    # the GCS marks a killed node dead after its health checks fail
    import time
    deadline = time.time() + timeout
    while True:
        alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        if second_id not in alive or time.time() > deadline:
            return alive
        time.sleep(1)


remover = RemoveSecondNode()
config = load_config(repo / "search_spaces" / "digits.yaml", overrides)
options = SearchOptions(f"sqlite:///{out / 'm.db'}", "multinode", out / "tune", "two-nodes", callbacks=[remover])
summary = run_search(config, options)
trials = ExperimentAnalysis(str(out / "tune" / "two-nodes")).trials
report = {
    "head": head_id, "second": second_id, "victim": remover.victim, "nodes": remover.nodes,
    "trials": {t.trial_id: {"status": t.status, "failures": t.run_metadata.num_failures,
                            "epoch": (t.last_result or {}).get("epoch")} for t in trials},
    "summary_trials": summary.trials,
    "alive": alive_nodes(),
}
(out / "report.json").write_text(json.dumps(report))
ray.shutdown()
cluster.shutdown()
"""


@pytest.mark.story
def test_search_survives_losing_a_node(raysynth_home, tmp_path):
    overrides = tiny_overrides() + [
        "train.epochs=5", "search.trials=4", "search.concurrency=2", "search.final_eval=false",
        "search.scheduler.name=fifo", "search.max_failures=2", "resources.trial.cpu=1",
    ]
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(REPO), *overrides],
        cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    report = json.loads((tmp_path / "report.json").read_text())

    # trials ran on both nodes (the node id each trial reported from)
    used = {n for nodes in report["nodes"].values() for n in nodes}
    assert used == {report["head"], report["second"]}
    # the second node was removed mid-search and is gone
    assert report["victim"] is not None and report["second"] not in report["alive"]
    # every trial accounted for: all four finished all epochs, the victim after a retry
    trials = report["trials"]
    assert len(trials) == 4 and report["summary_trials"] == 4
    assert all(t["status"] == "TERMINATED" and t["epoch"] == 5 for t in trials.values()), trials
    assert trials[report["victim"]]["failures"] >= 1
    assert report["nodes"][report["victim"]][-1] == report["head"]  # finished on the surviving node
