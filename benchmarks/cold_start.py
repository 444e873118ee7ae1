"""A search on a cold autoscaling cluster, timed: how long until the first GPU node
answers, until every GPU node the search asked for has joined, and until the search ends.

Ray's fake multi-node autoscaler on this machine (``raysynth.testing.fake_cluster``): a
head with 1 CPU and no GPU, one worker type ``{CPU: 2, GPU: 1}`` at 0 workers (at most
``--max-workers``); the GPUs are declared without hardware (``resources.fake_gpus``).
The search is the embedded task at a tiny size with a GPU for every kind of work, so
trials, generation actors and final workers all need added nodes. Run with autoscaler
v1 (default) or ``--v2``.

Printed: the head's start, then (from the search's start) each GPU node's arrival, the
first node's answer to raysynth's node check, and the search's end.

    .venv/bin/python benchmarks/cold_start.py [--v2] [--max-workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--v2", action="store_true", help="autoscaler v2 (default v1)")
    parser.add_argument("--max-workers", type=int, default=2)
    args = parser.parse_args()

    from raysynth.testing.fake_cluster import FakeAutoscalingCluster

    os.environ.update(FakeAutoscalingCluster.client_env)  # this driver attaches to it: before Ray is imported
    scratch = Path(tempfile.mkdtemp(prefix="rs-cold-"))
    os.environ["RAYSYNTH_HOME"] = str(scratch / "home")
    cluster = FakeAutoscalingCluster({"gpu": {"resources": {"CPU": 2, "GPU": 1}, "max_workers": args.max_workers}},
                                     head_cpus=1, v2=args.v2)
    began = time.perf_counter()
    cluster.start()
    print(f"autoscaler {'v2' if args.v2 else 'v1'}: head up in {time.perf_counter() - began:.1f} s", flush=True)
    try:
        import ray

        from raysynth.search.options import SearchOptions
        from raysynth.search.run import run_search
        from raysynth.validate import load_config

        os.environ["RAY_ADDRESS"] = cluster.address
        ray.init(log_to_driver=False)
        config = load_config(REPO / "search_spaces" / "digits.yaml", [
            "model.pretrain.steps=30", "pool.per_class=12", "pool.actors=2", "train.epochs=1", "train.steps_per_epoch=3",
            "train.batch_real=8", "train.batch_syn=8", "train.n_contr=1", "train.threads=1", "search.trials=2",
            "search.concurrency=2", "search.scheduler.name=fifo", "search.resource_wait_s=300", "resources.fake_gpus=true",
            *[f"resources.{kind}={{gpu: 1}}" for kind in ("trial", "generation", "final", "prepare")],
        ])
        arrivals, stop = [], threading.Event()

        def watch():
            seen = set()
            while not stop.wait(0.25):
                for n in ray.nodes():
                    if n["Alive"] and n["Resources"].get("GPU") and n["NodeID"] not in seen:
                        seen.add(n["NodeID"])
                        arrivals.append(time.perf_counter() - start)
                        print(f"  GPU node {len(seen)} joined at {arrivals[-1]:.1f} s", flush=True)

        start = time.perf_counter()
        threading.Thread(target=watch, daemon=True).start()
        summary = run_search(config, SearchOptions(f"sqlite:///{scratch / 'm.db'}", "cold-start", scratch / "tune", "cold"))
        end = time.perf_counter() - start
        stop.set()
        from mlflow.tracking import MlflowClient

        first = MlflowClient(f"sqlite:///{scratch / 'm.db'}").get_run(summary.parent_run_id).data.metrics["cluster_first_node_s"]
        print(f"first GPU node answered the node check: {first:.1f} s")
        print(f"all {len(arrivals)} GPU node(s) joined: {max(arrivals):.1f} s" if arrivals else "no GPU node joined")
        print(f"search end: {end:.1f} s (best val_acc {summary.best_val_acc:.3f}, {summary.trials} trials)")
        ray.shutdown()
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
