"""A search on a cold autoscaling cluster, as every shipped cluster config starts.

Ray's fake multi-node autoscaler (``raysynth.testing.fake_cluster``): a head with 1 CPU
and no GPU, one worker type {CPU: 2, GPU: 1} at 0 workers, at most 2. The GPUs are
declared without hardware (``resources.fake_gpus``: torch sees no CUDA, the work runs on
CPU). The search must not be refused: it asks, the autoscaler adds GPU nodes, and every
trial, generation actor and final-training worker runs on an added node with GPU ids.
``gpu: auto`` (prepare, finetune) means a GPU there: the autoscaler can start GPU nodes.

On the same cluster, before the search: a home the cluster's nodes do not see (a tmpfs
over it in the cluster's mount namespace, as a node-local path on real machines) exits
2 naming RAYSYNTH_HOME before anything is generated; after it, the same GPUs without
``fake_gpus`` are an error naming the node, torch's CUDA build and the driver.

The search is a miniature Flowers102 (the real file formats and the real 102 class names,
12 classes with images, "colt's foot" among them): a class name MLflow refuses as a key
must not stop it.
"""

import json
import os
import pytest
import subprocess
import sys

import torch
from conftest import REPO, make_flowers

from raysynth.data.flowers import NAMES
from raysynth.testing.fake_cluster import FakeAutoscalingCluster, hides_paths
from raysynth.tracking.mlflow_runs import KIND_TAG, mlflow_key

SCRIPT = r"""
import json, os, subprocess, sys, threading, time
from pathlib import Path

import ray

from raysynth.cluster import with_resolved_resources
from raysynth.config import ConfigError
from raysynth.node_check import check_nodes
from raysynth.search.options import SearchOptions
from raysynth.search.run import run_search
from raysynth.testing.fake_cluster import FakeAutoscalingCluster
from raysynth.validate import load_config

out, repo, hidden, overrides = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4:]
cluster = FakeAutoscalingCluster({"gpu": {"resources": {"CPU": 2, "GPU": 1}, "max_workers": 2}}, head_cpus=1,
                                 hidden=hidden or None)
report = {"events": []}
started = time.time()
cluster.start()
report["head_up_s"] = round(time.time() - started, 1)
try:
    os.environ["RAY_ADDRESS"] = cluster.address  # the driver attaches, as a submitted job does
    ray.init(log_to_driver=False)
    head = next(n["NodeID"] for n in ray.nodes() if "node:__internal_head__" in n["Resources"])
    stop = threading.Event()

    def watch():  # when each GPU node joined, from the search's start
        seen = set()
        while not stop.wait(0.5):
            for n in ray.nodes():
                if n["Alive"] and n["NodeID"] not in seen and n["Resources"].get("GPU"):
                    seen.add(n["NodeID"])
                    report["events"].append([n["NodeID"], round(time.time() - t0, 1)])

    config = load_config(repo / "search_spaces" / "flowers.yaml", [*overrides, "resources.fake_gpus=true"])
    if hidden:  # a home the nodes do not see: one line, exit 2, before any generation
        os.environ["RAYSYNTH_HOME"] = str(Path(hidden) / "home")
        try:
            run_search(config, SearchOptions(f"sqlite:///{out / 'local.db'}", "local-home", out / "tune-local", "local"))
            report["local_home"] = "the search ran"
        except ConfigError as exc:
            report["local_home"] = str(exc)
        os.environ["RAYSYNTH_HOME"] = str(out / "home")
    t0 = time.time()
    threading.Thread(target=watch, daemon=True).start()
    options = SearchOptions(f"sqlite:///{out / 'm.db'}", "cold-cluster", out / "tune", "cold")
    summary = run_search(config, options)
    report["search_s"] = round(time.time() - t0, 1)
    stop.set()
    # the same GPUs, not declared fake: torch sees no CUDA there, so the check refuses them
    real = with_resolved_resources(load_config(repo / "search_spaces" / "flowers.yaml", overrides))
    try:
        check_nodes(real)
        report["no_fake_gpus"] = None
    except ConfigError as exc:
        report["no_fake_gpus"] = str(exc)
    report.update(head=head, parent=summary.parent_run_id, finals=[f.label for f in summary.finals],
                  gpu_nodes=[n["NodeID"] for n in ray.nodes() if n["Resources"].get("GPU")])
    # a driver in token mode on this cluster without token auth (what `ray.init` leaves
    # in the environment of a process that started a local instance): one line, not a
    # generation whose actors are all cancelled before they start
    token_driver = subprocess.run(
        [sys.executable, str(out / "token_driver.py"), str(repo), *overrides], capture_output=True, text=True, timeout=300,
        env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0123456789abcdef" * 4})
    report["token_driver"] = token_driver.stdout.strip().splitlines()[-1:] or token_driver.stderr[-2000:]
finally:
    (out / "report.json").write_text(json.dumps(report))
    ray.shutdown()
    cluster.stop()
"""


TOKEN_DRIVER = r"""
import sys
from pathlib import Path

import ray

from raysynth.cluster import with_resolved_resources
from raysynth.config import ConfigError
from raysynth.node_check import check_nodes
from raysynth.validate import load_config

ray.init(log_to_driver=False)
config = load_config(Path(sys.argv[1]) / "search_spaces" / "flowers.yaml", [*sys.argv[2:], "resources.fake_gpus=true"])
try:
    check_nodes(with_resolved_resources(config))
    print("the check passed")
except ConfigError as exc:
    print(exc)
"""


def _tiny_checkpoint(path):
    from raysynth.models.backbone import create_model

    torch.manual_seed(0)
    torch.save(create_model("raysynth-tiny").state_dict(), path)
    return path


@pytest.mark.story
def test_a_cold_autoscaling_cluster_adds_gpu_nodes_and_the_search_finishes_there(tmp_path):
    root = make_flowers(tmp_path / "flowers102", classes=12, per_split=(3, 2, 1))
    (root / "cat_to_name.json").write_text(json.dumps({str(i + 1): name for i, name in enumerate(NAMES)}))
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt")
    home = tmp_path / "home"
    hidden = tmp_path / "node-local"  # absent on the cluster's nodes (when this machine allows it)
    hidden.mkdir()
    overrides = [
        f"data.root={root}", "data.image_size=32", "data.shots=2", "data.val_per_class=1",
        "model.name=raysynth-tiny", f"model.pretrained={ckpt}", "model.lora.dropout=0.0",
        "pool.generator=morph", "pool.options={}", "pool.per_class=4", "pool.actors=2", "pool.shard_size=8",
        "pool.clip_model=null", "pool.clip_pretrained=null", "pool.filter=none",
        "train.epochs=1", "train.steps_per_epoch=2", "train.batch_real=4", "train.batch_syn=4", "train.threads=1",
        "loss={ce: {}}", "search.space={}", "search.resource_wait_s=240",
        "search.trials=1", "search.concurrency=1", "search.algorithm=random", "search.scheduler.name=fifo",
        "search.final_seeds=1", "search.space.class_weights={type: per_class, low: 0.0, high: 1.0}",
        # a GPU declared for trials, generation and finals; preparation and fine-tuning
        # say `auto`, which must mean a GPU on a cluster that can add GPU nodes
        *[f"resources.{kind}={{gpu: 1}}" for kind in ("trial", "generation", "final")],
        *[f"resources.{kind}={{}}" for kind in ("finetune", "prepare")],
    ]
    (tmp_path / "token_driver.py").write_text(TOKEN_DRIVER)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(REPO), str(hidden) if hides_paths() else "", *overrides],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        # (in the cluster's auth mode: the pytest process may be in token mode, from its own Ray)
        env={**os.environ, **FakeAutoscalingCluster.client_env, "PYTHONPATH": str(REPO), "RAYSYNTH_HOME": str(home)},
    )
    report_file = tmp_path / "report.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else {}
    print("cold cluster:", json.dumps({k: v for k, v in report.items() if k.endswith("_s") or k == "events"}))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    head, added = report["head"], set(report["gpu_nodes"])
    assert head not in added and 1 <= len(added) <= 2
    assert [node for node, _ in report["events"]] and {node for node, _ in report["events"]} <= added

    if hides_paths():  # the node-local home: one line naming RAYSYNTH_HOME, nothing generated
        assert report["local_home"].startswith(f"RAYSYNTH_HOME={hidden / 'home'}: node "), report["local_home"]
        assert "does not see what the driver wrote there" in report["local_home"]
        assert not list((hidden / "home").glob("pools/*"))
    # GPUs torch cannot use, not declared fake: the node, torch's CUDA build, the driver
    problem = report["no_fake_gpus"]
    assert problem and "was given GPU(s) 0 but torch" in problem and "sees no CUDA device" in problem
    assert "NVIDIA driver:" in problem and "resources.fake_gpus=true" in problem

    # generation actors: recorded in the pool's meta.json, on added GPU nodes with GPU ids
    metas = [json.loads(p.read_text()) for p in (home / "pools").glob("*/meta.json")]
    # elastic: started with the first actor, more as nodes arrived
    assert metas and all(m["actors"] and m["elastic"] is True for m in metas)
    for meta in metas:
        assert {a["node"] for a in meta["actors"]} <= added
        assert all(a["gpu_ids"] for a in meta["actors"])

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp = client.get_experiment_by_name("cold-cluster")
    runs = client.search_runs([exp.experiment_id])
    trials = [r for r in runs if r.data.tags.get(KIND_TAG) == "trial"]
    finals = [r for r in runs if r.data.tags.get(KIND_TAG) == "final"]
    assert len(trials) == 1 and sorted(r.data.tags["raysynth.final"] for r in finals) == sorted(report["finals"])
    assert len(finals) == 3  # the best config, real only, all weights 1
    for run in trials + finals:
        assert run.data.tags["raysynth.node"] in added, run.info.run_name
        assert run.data.tags["raysynth.gpu_ids"] != "", run.info.run_name
    # the resolved config: a GPU for every kind of work, `auto` included
    parent = client.get_run(report["parent"])
    for kind in ("trial", "generation", "final", "finetune", "prepare"):
        assert parent.data.params[f"resources.{kind}.gpu"] == "1.0", kind
    assert parent.data.metrics["cluster_first_node_s"] > 0  # the first GPU node's start, waited for

    # a driver in token mode (the cluster has no token auth): one line naming the mode
    (line,) = report["token_driver"]
    assert line.startswith("node check: an actor of this search died before it started"), line
    assert "RAY_AUTH_MODE=token" in line

    # Flowers102's "colt's foot" is in the search under its MLflow key, its name kept
    assert mlflow_key("w/colt's foot") in trials[0].data.params
    names = json.loads(open(client.download_artifacts(report["parent"], "class_names.json", str(tmp_path))).read())
    assert {"class": "colt's foot", "mlflow_key": mlflow_key("colt's foot")} in names
    assert parent.info.status == "FINISHED"
