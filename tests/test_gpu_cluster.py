"""Declared resources on a cluster whose driver sits on a CPU-only head.

Ray's own ``ray.cluster_utils.Cluster``: a head with 1 CPU and no GPU, plus a node that
declares 2 GPUs (Ray accepts GPUs a machine does not have; torch sees no CUDA there, so
the work runs on its CPU). With the default ``gpu: auto`` every trial, generation actor,
preparation task and final-training worker must land on the GPU node with GPU ids.

The search is a miniature Flowers102 (the real file formats and the real 102 class names,
12 classes with images, "colt's foot" among them): a class name MLflow refuses as a key
must not stop it.
"""

import json
import os
import subprocess
import sys

import torch
from conftest import REPO, make_flowers

from raysynth.data.flowers import NAMES
from raysynth.tracking.mlflow_runs import KIND_TAG, mlflow_key

SCRIPT = r"""
import json, sys
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from raysynth.search.options import SearchOptions
from raysynth.search.run import run_search
from raysynth.validate import load_config

out, repo, overrides = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False})
gpu_node = cluster.add_node(num_cpus=2, num_gpus=2)
ray.init(address=cluster.address, log_to_driver=False)
config = load_config(repo / "search_spaces" / "flowers.yaml", overrides)
options = SearchOptions(f"sqlite:///{out / 'm.db'}", "gpu-cluster", out / "tune", "fake-gpus")
summary = run_search(config, options)
(out / "report.json").write_text(json.dumps({
    "head": cluster.head_node.node_id, "gpu_node": gpu_node.node_id, "parent": summary.parent_run_id,
    "finals": [f.label for f in summary.finals],
}))
ray.shutdown()
cluster.shutdown()
"""


def _tiny_checkpoint(path):
    from raysynth.models.backbone import create_model

    torch.manual_seed(0)
    torch.save(create_model("raysynth-tiny").state_dict(), path)
    return path


def test_auto_resources_put_all_work_on_the_gpu_node(tmp_path, raysynth_home):
    root = make_flowers(tmp_path / "flowers102", classes=12, per_split=(3, 2, 1))
    (root / "cat_to_name.json").write_text(json.dumps({str(i + 1): name for i, name in enumerate(NAMES)}))
    ckpt = _tiny_checkpoint(tmp_path / "tiny.pt")
    home = tmp_path / "home"
    overrides = [
        f"data.root={root}", "data.image_size=32", "data.shots=2", "data.val_per_class=1",
        "model.name=raysynth-tiny", f"model.pretrained={ckpt}", "model.lora.dropout=0.0",
        "pool.generator=morph", "pool.options={}", "pool.per_class=4", "pool.actors=2", "pool.shard_size=8",
        "pool.clip_model=null", "pool.clip_pretrained=null", "pool.filter=none",
        "train.epochs=1", "train.steps_per_epoch=2", "train.batch_real=4", "train.batch_syn=4", "train.threads=1",
        "loss={ce: {}}", "search.space={}",
        "search.trials=1", "search.concurrency=1", "search.algorithm=random", "search.scheduler.name=fifo",
        "search.final_seeds=1", "search.space.class_weights={type: per_class, low: 0.0, high: 1.0}",
        # flowers.yaml says GPU explicitly; the subject here is the default, `auto`
        *[f"resources.{kind}={{}}" for kind in ("trial", "generation", "final", "finetune", "prepare")],
    ]
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), str(REPO), *overrides],
        cwd=REPO, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PYTHONPATH": str(REPO), "RAYSYNTH_HOME": str(home)},
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    report = json.loads((tmp_path / "report.json").read_text())
    gpu_node = report["gpu_node"]

    # generation actors: recorded in the pool's meta.json
    metas = [json.loads(p.read_text()) for p in (home / "pools").glob("*/meta.json")]
    assert metas and all(m["actors"] for m in metas)
    for meta in metas:
        assert {a["node"] for a in meta["actors"]} == {gpu_node}
        assert all(a["gpu_ids"] for a in meta["actors"])

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp = client.get_experiment_by_name("gpu-cluster")
    runs = client.search_runs([exp.experiment_id])
    trials = [r for r in runs if r.data.tags.get(KIND_TAG) == "trial"]
    finals = [r for r in runs if r.data.tags.get(KIND_TAG) == "final"]
    assert len(trials) == 1 and sorted(r.data.tags["raysynth.final"] for r in finals) == sorted(report["finals"])
    assert len(finals) == 3  # the best config, real only, all weights 1
    for run in trials + finals:
        assert run.data.tags["raysynth.node"] == gpu_node, run.info.run_name
        assert run.data.tags["raysynth.gpu_ids"] != "", run.info.run_name
    # the resolved config says what `auto` meant here: a GPU for every kind of work (the
    # preparation tasks too, which the CPU-only head cannot then hold)
    parent = client.get_run(report["parent"])
    for kind in ("trial", "generation", "final", "finetune", "prepare"):
        assert parent.data.params[f"resources.{kind}.gpu"] == "1.0", kind

    # Flowers102's "colt's foot" is in the search under its MLflow key, its name kept
    assert mlflow_key("w/colt's foot") in trials[0].data.params
    names = json.loads(open(client.download_artifacts(report["parent"], "class_names.json", str(tmp_path))).read())
    assert {"class": "colt's foot", "mlflow_key": mlflow_key("colt's foot")} in names
    assert parent.info.status == "FINISHED"
