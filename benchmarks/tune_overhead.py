"""Ray Tune overhead of raysynth's 1-worker trial path, and where the time goes.

Each repeat runs N trials (~10 s of training each) through raysynth's own Tuner
(``search.tuner.build_tuner``: the config's searcher, retries, per-epoch trial
checkpoints, the MLflow ``TrialTracker`` and progress callbacks; FIFO, one trial at a
time on a 1-CPU trial) and then the *same* N configs as a plain in-process loop. It
prints the ratio Tuner / plain per repeat and their median (goal <= 1.10), then a
breakdown of the Tuner's extra seconds from timestamps the trials and the driver record:
the trial actor's start and imports, the setup (data, backbone) and checkpoints inside
trials, the searcher and the MLflow callback in the driver, and Tune's own gaps between
trials. Tune's own share of the actor start is measured apart, with a trainable that
imports nothing. Ray is started (and the pool prepared) before any timing: a search
attaches to a running cluster. ``--trainer-trials`` also times the TorchTrainer-inside-Tune path.

    .venv/bin/python benchmarks/tune_overhead.py [--trials 8] [--repeats 3] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKS = "tune-overhead-marks.jsonl"  # in RAYSYNTH_HOME: what the trial processes record


def _mark(home: str, **record) -> None:
    with open(Path(home) / MARKS, "a") as f:
        f.write(json.dumps({**record, "pid": os.getpid()}) + "\n")


def timed_trial(params, base, context, storage_path):
    """raysynth's ``run_trial``, with its entry/exit, setup and checkpoint times recorded.
    Defined here (pickled by value) and swapped in for ``run_trial`` before the Tuner is
    built; the trial itself runs unchanged."""
    import raysynth.search.trial as trial
    import raysynth.train.session as session

    entered, root = time.time(), context.home["RAYSYNTH_HOME"]
    build_run, state_checkpoint = session.build_run, trial.state_checkpoint
    spent = {"setup": 0.0, "checkpoint": 0.0}

    def timed_build(*a, **k):
        start = time.perf_counter()
        try:
            return build_run(*a, **k)
        finally:
            spent["setup"] += time.perf_counter() - start

    class TimedCheckpoint:
        def __init__(self, *a, **k):
            self.inner = state_checkpoint(*a, **k)

        def __enter__(self):
            self.start = time.perf_counter()
            return self.inner.__enter__()

        def __exit__(self, *exc):
            # saving the state, then tune.report's persisting it to storage (in the with body)
            result = self.inner.__exit__(*exc)
            spent["checkpoint"] += time.perf_counter() - self.start
            return result

    session.build_run, trial.state_checkpoint = timed_build, TimedCheckpoint
    try:
        trial.run_trial(params, base=base, context=context, storage_path=storage_path)
    finally:
        session.build_run, trial.state_checkpoint = build_run, state_checkpoint
        _mark(root, kind="trial", entered=entered, left=time.time(), **spent)


def timed(obj, methods: list[str], totals: dict, key: str):
    """Wrap ``obj``'s methods so the seconds they take add up in ``totals[key]``."""
    for name in methods:
        inner = getattr(obj, name)

        def wrapper(*a, _inner=inner, **k):
            start = time.perf_counter()
            try:
                return _inner(*a, **k)
            finally:
                totals[key] = totals.get(key, 0.0) + time.perf_counter() - start

        setattr(obj, name, wrapper)
    return obj


def tuner_run(config, context, home: Path, name: str) -> dict:
    """One search through raysynth's Tuner; returns its seconds, the trials' configs and
    the timestamps behind the breakdown."""
    import mlflow

    import raysynth.search.tuner as tuner_module
    from raysynth.search.options import SearchOptions
    from raysynth.tracking.mlflow_runs import TrialTracker
    from raysynth.tracking.progress import TrialProgress

    (home / MARKS).unlink(missing_ok=True)
    client = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tune-overhead") or client.get_experiment(client.create_experiment("tune-overhead"))
    parent = client.create_run(experiment.experiment_id, run_name=name)
    driver: dict[str, float] = {}
    hooks = ["on_trial_start", "on_trial_result", "on_trial_complete"]
    tracker = timed(TrialTracker(client.tracking_uri, experiment.experiment_id, parent.info.run_id, {}, config.train.epochs),
                    hooks, driver, "mlflow")
    progress = timed(TrialProgress(config.search.trials, config.train.epochs), ["on_trial_result", "on_trial_complete"], driver, "progress")
    build_searcher, run_trial = tuner_module.build_searcher, tuner_module.run_trial
    tuner_module.build_searcher = lambda *a, **k: timed(build_searcher(*a, **k), ["suggest", "on_trial_complete"], driver, "searcher")
    tuner_module.run_trial = timed_trial
    try:
        options = SearchOptions(client.tracking_uri, "tune-overhead", str(home / "tune"), name)
        tuner = tuner_module.build_tuner(config, context, options, [tracker, progress])
        start = time.time()
        results = tuner.fit()
        end = time.time()
    finally:
        tuner_module.build_searcher, tuner_module.run_trial = build_searcher, run_trial
    client.set_terminated(parent.info.run_id)
    errors = [r.error for r in results if r.error is not None]
    assert not errors, errors
    trials = sorted((json.loads(line) for line in (home / MARKS).read_text().splitlines()), key=lambda m: m["entered"])
    return {"seconds": end - start, "start": start, "end": end, "trials": trials, "driver": driver,
            "configs": [r.config for r in results]}


def plain_run(config, configs: list[dict], context) -> dict:
    """The same configs, one after another in this process."""
    from raysynth.search.space import apply_params
    from raysynth.train.session import build_run

    setup, start = 0.0, time.perf_counter()
    for params in configs:
        cfg, weights = apply_params(config, params, list(context.classes), space=context.space)
        s = time.perf_counter()
        run = build_run(cfg, weights, context)
        setup += time.perf_counter() - s
        run.train()
    return {"seconds": time.perf_counter() - start, "setup": setup}


def breakdown(tuned: dict, plain: dict) -> list[tuple[str, float]]:
    """The Tuner's extra seconds over the plain loop, by where they were spent."""
    trials = tuned["trials"]
    first, last = trials[0], trials[-1]
    gaps = sum(b["entered"] - a["left"] for a, b in zip(trials, trials[1:]))
    in_trial = sum(t["left"] - t["entered"] for t in trials)
    setup = sum(t["setup"] for t in trials)
    checkpoint = sum(t["checkpoint"] for t in trials)
    driver = tuned["driver"]
    return [
        ("trial actor start + imports (before the first trial)", first["entered"] - tuned["start"]),
        ("setup in trials (data, backbone; memoised per actor) minus the plain loop's", setup - plain["setup"]),
        ("checkpoints (save + report to storage)", checkpoint),
        ("rest of the trials' time over the plain loop's training", in_trial - setup - checkpoint - (plain["seconds"] - plain["setup"])),
        ("between trials (Tune: searcher, callbacks, actor reuse)", gaps),
        ("  of which searcher suggest/complete (driver)", driver.get("searcher", 0.0)),
        ("  of which MLflow TrialTracker (driver)", driver.get("mlflow", 0.0)),
        ("  of which progress lines (driver)", driver.get("progress", 0.0)),
        ("after the last trial (Tune's teardown)", tuned["end"] - last["left"]),
        ("total extra", tuned["seconds"] - plain["seconds"]),
    ]


def bare_tune_start(home: Path) -> float:
    """Seconds from ``fit()`` to the first line of a trainable that imports nothing: Tune's
    own share of the first trial's start (its actor, ray.tune in that process)."""
    from ray import tune

    def bare(_config: dict) -> None:
        tune.report({"entered": time.time()})

    tuner = tune.Tuner(bare, run_config=tune.RunConfig(name="bare", storage_path=str(home / "tune"), verbose=0))
    start = time.time()
    return tuner.fit()[0].metrics["entered"] - start


def trainer_path(config, context, home: Path, count: int) -> float:
    """``count`` trials of the TorchTrainer-inside-Tune path (1 worker: equal compute)."""
    from ray import tune

    from raysynth.search.space import apply_params
    from raysynth.search.tuner import tune_run_config
    from raysynth.train.ray_train import train_with_trainer

    weights = {c: 1.0 for c in context.classes}

    def trainer_trial(c: dict) -> None:
        cfg, w = apply_params(config, {"w": weights}, list(context.classes))
        trial_id = tune.get_context().get_trial_id()
        train_with_trainer(cfg, w, context, True, name=f"bench-trainer-{trial_id}", storage_path=home / "tune", checkpoint=False, in_tune=True)

    tuner = tune.Tuner(
        tune.with_resources(trainer_trial, {"cpu": 0, "memory": 1}),
        param_space={"i": tune.grid_search(list(range(count)))},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune_run_config(config, "bench-trainer", home / "tune", []),
    )
    start = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6, help="epochs per trial (~1.5 s each on 2 cores)")
    parser.add_argument("--trainer-trials", type=int, default=0, help="also time N trials of the TorchTrainer path")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="raysynth-bench-"))
    os.environ["RAYSYNTH_HOME"] = str(home)

    import ray

    from raysynth.logs import quiet_ray
    from raysynth.prepare import prepare
    from raysynth.search.space import parse_space
    from raysynth.validate import load_config

    overrides = [f"train.epochs={args.epochs}", f"search.trials={args.trials}", "search.concurrency=1", "search.scheduler.name=fifo"]
    config = load_config(REPO / "search_spaces" / "digits.yaml", overrides)
    space = parse_space(config.search.space, config)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    quiet_ray()
    context = prepare(config, space.plan(config), space=space)  # backbone + pool, cached: not part of any timing
    print(f"{args.trials} trials of {args.epochs} epochs ({config.train.n_contr} seeds each), searcher {config.search.algorithm}, "
          f"{args.repeats} repeats", flush=True)

    ratios, rows = [], []
    for r in range(args.repeats):
        tuned = tuner_run(config, context, home, f"bench-{r}")
        plain = plain_run(config, tuned["configs"], context)
        ratios.append(tuned["seconds"] / plain["seconds"])
        rows.append(breakdown(tuned, plain))
        print(f"repeat {r + 1}: Tuner {tuned['seconds']:6.1f} s, plain loop {plain['seconds']:6.1f} s "
              f"({plain['seconds'] / args.trials:.2f} s/trial): ratio {ratios[-1]:.3f}", flush=True)
    bare = statistics.median(bare_tune_start(home) for _ in range(args.repeats))
    trainer = trainer_path(config, context, home, args.trainer_trials) if args.trainer_trials else 0.0
    ray.shutdown()

    print(f"\nratio Tuner / plain, median of {args.repeats}: {statistics.median(ratios):.3f}  (goal <= 1.10)")
    print("where the Tuner's extra seconds go (median over repeats):")
    for i, (label, _) in enumerate(rows[0]):
        print(f"  {statistics.median(row[i][1] for row in rows):7.2f} s  {label}")
    print(f"of the actor start: Tune starting an actor for a trainable that imports nothing {bare:.2f} s (median of {args.repeats}); "
          "the rest is that actor importing raysynth's trial path (torch, open_clip)")
    sizes = [p.stat().st_size for p in (home / "tune").glob("bench-0/*/checkpoint_*/state.pt")]
    if sizes:
        print(f"one trial checkpoint (trainable tensors + optimiser state): {max(sizes) / 2**20:.2f} MB")
    if args.trainer_trials:
        per_plain = plain["seconds"] / args.trials
        print(f"TorchTrainer inside trial: {args.trainer_trials} trials in {trainer:.1f} s: "
              f"+{trainer / args.trainer_trials - per_plain:.1f} s per trial over the plain loop")


if __name__ == "__main__":
    main()
