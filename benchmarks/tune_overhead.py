"""Ray Tune overhead of raysynth's 1-worker trial path, measured in one run.

The same N trials (~10 s of training each) run (a) as a plain in-process loop and (b)
through Ray Tune exactly as raysynth's Tuner runs them (``run_trial`` as a function
trainable, reuse_actors=True, one CPU per trial, one trial at a time), then (c) a few
through the TorchTrainer-inside-Tune path at equal compute (1 worker). Prints the ratio
(b)/(a) — goal <= 1.10 — and the TorchTrainer path's extra seconds per trial. Ray is
started before timing: a search attaches to a running cluster.

    .venv/bin/python benchmarks/tune_overhead.py [--trials 4] [--trainer-trials 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["five", "six", "seven", "eight", "nine"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--trainer-trials", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6, help="epochs per trial (~1.5 s each on 2 cores)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="raysynth-bench-"))
    os.environ["RAYSYNTH_HOME"] = str(home)

    import ray
    from ray import tune

    from raysynth.prepare import prepare
    from raysynth.search.objective import run_trial
    from raysynth.search.space import apply_params
    from raysynth.search.tuner import tune_run_config
    from raysynth.train.ray_train import fit_with_trainer
    from raysynth.train.session import train_in_process
    from raysynth.validate import load_config

    config = load_config(REPO / "search_spaces" / "digits.yaml", [f"train.epochs={args.epochs}"])
    n = max(args.trials, args.trainer_trials)
    params = [
        {"train.lr": 1e-3 * (1 + i), "w": dict(zip(CLASSES, [0.2 * i, 1.0, 0.5, 1.0, 0.8]))} for i in range(n)
    ]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    prepare(config)  # backbone + pool, cached: not part of any timing
    storage = home / "tune"

    def fit(trial_fn, count: int, resources: dict, name: str) -> float:
        tuner = tune.Tuner(
            tune.with_resources(trial_fn, resources),
            param_space={"i": tune.grid_search(list(range(count)))},
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
            run_config=tune_run_config(config, name, storage, []),  # raysynth's: retries, checkpoints
        )
        start = time.perf_counter()
        results = tuner.fit()
        seconds = time.perf_counter() - start
        errors = [r.error for r in results if r.error is not None]
        assert not errors, errors
        return seconds

    # (a) plain in-process loop
    start = time.perf_counter()
    for p in params[: args.trials]:
        cfg, w = apply_params(config, p, CLASSES)
        train_in_process(cfg, w)
    plain = time.perf_counter() - start

    # (b) the Tune function-trainable path of raysynth's Tuner
    base, home_s, storage_s = config.to_dict(), {"RAYSYNTH_HOME": str(home)}, str(storage)

    def function_trial(c: dict) -> None:
        run_trial(params[c["i"]], base=base, home=home_s, storage_path=storage_s)

    tuned = fit(function_trial, args.trials, {"cpu": config.train.threads}, "bench-function")

    # (b') the same without per-epoch trial checkpoints (search.checkpoint_every=0)
    base_nock = {**base, "search": {**base["search"], "checkpoint_every": 0}}

    def function_trial_nock(c: dict) -> None:
        run_trial(params[c["i"]], base=base_nock, home=home_s, storage_path=storage_s)

    untuned = fit(function_trial_nock, args.trials, {"cpu": config.train.threads}, "bench-function-nock")

    # (c) a TorchTrainer inside each Tune trial, 1 worker (equal compute)
    def trainer_trial(c: dict) -> None:
        cfg, w = apply_params(config, params[c["i"]], CLASSES)
        trial_id = tune.get_context().get_trial_id()
        fit_with_trainer(cfg, w, True, name=f"bench-trainer-{trial_id}", storage_path=storage, checkpoint=False, in_tune=True)

    trainer = fit(trainer_trial, args.trainer_trials, {"cpu": 0, "memory": 1}, "bench-trainer") if args.trainer_trials else 0.0
    ray.shutdown()

    per_plain = plain / args.trials
    print(f"plain in-process loop:        {args.trials} trials in {plain:6.1f} s ({per_plain:.2f} s/trial)")
    print(f"raysynth Tuner, 1-worker:     {args.trials} trials in {tuned:6.1f} s ({tuned / args.trials:.2f} s/trial)")
    sizes = [p.stat().st_size for p in (storage / "bench-function").glob("*/checkpoint_*/state.pt")]
    print(f"  one trial checkpoint (trainable tensors + optimiser state): {max(sizes) / 2**20:.2f} MB")
    print(f"  without trial checkpoints:  {args.trials} trials in {untuned:6.1f} s ({untuned / args.trials:.2f} s/trial)")
    print(f"ratio Tuner / plain = {tuned / plain:.3f}  (goal <= 1.10); without checkpoints {untuned / plain:.3f}")
    if args.trainer_trials:
        print(f"TorchTrainer inside trial:    {args.trainer_trials} trials in {trainer:6.1f} s ({trainer / args.trainer_trials:.2f} s/trial)")
        print(f"TorchTrainer path: +{trainer / args.trainer_trials - per_plain:.1f} s per trial over the plain loop")


if __name__ == "__main__":
    main()
