"""Chaos: a search whose trial workers are killed at random and whose driver is killed
once, then resumed; prints what survived.

This script starts a local Ray cluster, runs ``jobs/search.py`` (the embedded search)
as a separate driver process attached to it, and meanwhile SIGKILLs a random trial
worker process (``ray::ImplicitFunc``) every few seconds. Once a third of the trials
have ended it SIGKILLs the driver, records what MLflow holds, and runs the same command
with ``--resume``; the killing goes on until the search ends. Then it prints:

* trials finished (all epochs) / stopped by ASHA / failed (out of retries),
* trials retried (Tune's failure count) and worker kills,
* MLflow runs duplicated (child runs per trial beyond one; must be 0),
* results lost (a trial that had ended before the driver was killed and is no longer
  ended with the same value, or a trial of Tune's table without its MLflow run; must be 0).

    .venv/bin/python benchmarks/chaos.py [--trials 12] [--kill-every 15] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def trial_workers(busy: bool = False) -> list:
    """Trial processes of the cluster this script started (children of its raylet);
    ``busy``: only those running a trial (an idle, reusable actor is ``ray::ImplicitFunc``)."""
    import psutil

    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if " ".join(p.cmdline()).startswith("ray::ImplicitFunc" + (".train" if busy else "")):
                found.append(p)
        except psutil.Error:
            pass
    return found


def ended_trials(uri: str, experiment: str) -> dict[str, tuple[str, str, list]]:
    """trial id -> (status tag, run id, val_acc history) of every trial run that has ended."""
    from mlflow.tracking import MlflowClient

    from raysynth.tracking.mlflow_runs import KIND_TAG, STATUS_TAG

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    out = {}
    for r in client.search_runs([exp.experiment_id], max_results=50000) if exp else []:
        if r.data.tags.get(KIND_TAG) == "trial" and r.data.tags.get(STATUS_TAG):
            history = [(m.step, m.value) for m in client.get_metric_history(r.info.run_id, "val_acc")]
            out[r.data.tags["raysynth.trial_id"]] = (r.data.tags[STATUS_TAG], r.info.run_id, sorted(history))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--kill-every", type=float, default=15.0, help="mean seconds between trial-worker kills")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    home = Path(tempfile.mkdtemp(prefix="raysynth-chaos-"))
    os.environ["RAYSYNTH_HOME"] = str(home)
    import ray
    from ray.tune import ExperimentAnalysis

    from raysynth.search.space import parse_space
    from raysynth.tracking.mlflow_runs import KIND_TAG
    from raysynth.validate import load_config

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    sets = [f"search.trials={args.trials}", "search.final_eval=false", "search.max_failures=3"]
    config = load_config(REPO / "search_spaces" / "digits.yaml", sets)
    space = parse_space(config.search.space, config)
    from raysynth.prepare import prepare

    prepare(config, space.plan(config), space=space)  # cached; not the subject here

    uri, name = f"sqlite:///{home / 'mlflow.db'}", "chaos"
    cmd = [sys.executable, str(REPO / "jobs" / "search.py"), "--storage", str(home / "tune"), "--name", name,
           "--tracking-uri", uri, "--experiment", name, *[a for s in sets for a in ("--set", s)]]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    log = open(home / "driver.log", "w")

    def start(*extra: str) -> subprocess.Popen:
        return subprocess.Popen([*cmd, *extra], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    kills, driver_killed, snapshot = 0, False, {}
    began = time.perf_counter()
    driver = start()
    next_kill = time.perf_counter() + rng.uniform(0.5, 1.5) * args.kill_every
    while True:
        code = driver.poll()
        if code is not None:
            if driver_killed and code != -signal.SIGKILL:
                break
            if code != -signal.SIGKILL:
                raise SystemExit(f"driver exited with {code} before it was killed; see {home / 'driver.log'}")
        now = time.perf_counter()
        if now >= next_kill:
            workers = trial_workers(busy=True)
            if workers:
                victim = rng.choice(workers)
                try:
                    victim.kill()
                    kills += 1
                    print(f"{now - began:6.1f} s  killed trial worker pid {victim.pid} ({kills} so far)", flush=True)
                except Exception:
                    pass
            next_kill = now + rng.uniform(0.5, 1.5) * args.kill_every
        if not driver_killed and (home / "tune" / name / "raysynth_parent_run.json").exists():
            ended = ended_trials(uri, name)
            if len(ended) >= max(1, args.trials // 3):
                driver.kill()
                driver.wait()
                driver_killed = True
                snapshot = ended_trials(uri, name)  # what MLflow held when the driver died
                print(f"{time.perf_counter() - began:6.1f} s  killed the driver with {len(snapshot)} trials ended; "
                      "resuming with --resume", flush=True)
                time.sleep(3)  # Ray ends the dead driver's trial actors
                driver = start("--resume")
        time.sleep(0.25)
    log.close()
    if code != 0:
        raise SystemExit(f"resumed driver exited with {code}; see {home / 'driver.log'}")

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    children = [r for r in client.search_runs([exp.experiment_id], max_results=50000) if r.data.tags.get(KIND_TAG) == "trial"]
    ids = [r.data.tags["raysynth.trial_id"] for r in children]
    duplicated = len(ids) - len(set(ids))
    final = ended_trials(uri, name)
    tune_trials = ExperimentAnalysis(str(home / "tune" / name)).trials
    # lost: a trial that had ended before the driver died and now has no ended run, another
    # run, or a val_acc history that no longer starts with what was recorded then
    lost = [
        t for t, (status, run, history) in snapshot.items()
        if t not in final or final[t][1] != run or final[t][2][: len(history)] != history
    ]
    lost += [t.trial_id for t in tune_trials if t.trial_id not in set(ids)]
    # the driver can die after a trial ended but before Tune saved that: the resumed
    # search continues such a trial from its checkpoint (its record grows, nothing is lost)
    changed = [t for t, (status, _, _) in snapshot.items() if t in final and final[t][0] != status]
    statuses = [s for s, _, _ in final.values()]
    retried = [t for t in tune_trials if t.run_metadata.num_failures > 0]
    ray.shutdown()

    print(f"wall {time.perf_counter() - began:.0f} s; trial workers killed {kills}; driver killed 1 and resumed")
    print(f"trials in Tune's table: {len(tune_trials)} of {args.trials}")
    print(f"trials finished: {statuses.count('finished')} (+ {statuses.count('pruned')} stopped by ASHA, "
          f"{statuses.count('failed')} failed after {config.search.max_failures} retries)")
    print(f"trials retried: {len(retried)} ({sum(t.run_metadata.num_failures for t in retried)} retries in all)")
    print(f"MLflow runs duplicated: {duplicated}  (must be 0)")
    print(f"results lost: {len(lost)}  (must be 0){' ' + str(lost) if lost else ''}")
    print(f"trials that had ended when the driver died and were continued after --resume: {len(changed)} "
          f"({', '.join(f'{t}: {snapshot[t][0]} -> {final[t][0]}' for t in changed) or 'none'})")


if __name__ == "__main__":
    main()
