"""Search throughput and driver memory under load, measured in one run.

1. Trials per minute of the embedded search (digits, default epochs and steps, 1-CPU
   trials, FIFO so every trial runs all epochs) with ``search.concurrency`` 1 and then 2,
   timed from the first trial's start to the last trial's end (the cached backbone and
   pools are prepared once, before either). Goal on 2 cores: ratio >= 1.7.
2. Peak resident memory of the driver process through a search of 200 short trials
   (1 epoch of 2 steps, so the driver's bookkeeping — Tune's trial table, searcher,
   MLflow child runs, the report — dominates). Goal: < 2 GiB.

    .venv/bin/python benchmarks/scale.py [--trials 16] [--load-trials 200]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class PeakRSS:
    """Samples this process's resident memory every ``interval`` seconds."""

    def __init__(self, interval: float = 0.2):
        import psutil

        self.process, self.interval = psutil.Process(), interval
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="trials per concurrency level")
    parser.add_argument("--load-trials", type=int, default=200, help="trials of the driver-memory search (0: skip)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every search")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="raysynth-bench-"))
    os.environ["RAYSYNTH_HOME"] = str(home)
    import ray
    from ray.tune import Callback

    from raysynth.logs import setup_logging
    from raysynth.prepare import prepare
    from raysynth.search.options import SearchOptions
    from raysynth.search.run import run_search
    from raysynth.search.space import parse_space
    from raysynth.validate import load_config

    class Span(Callback):
        """First trial start and last trial end, in the driver."""

        def __init__(self):
            self.first = self.last = None

        def on_trial_start(self, iteration, trials, trial, **info):
            self.first = self.first or time.perf_counter()

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.last = time.perf_counter()

    setup_logging()
    logging.getLogger("ray").setLevel(logging.WARNING)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    fixed = ["search.final_eval=false", "search.scheduler.name=fifo", "train.threads=1", *args.set]
    base = load_config(REPO / "search_spaces" / "digits.yaml", fixed)
    space = parse_space(base.search.space, base)
    start = time.perf_counter()
    prepare(base, space.plan(base), space=space)
    print(f"prepared backbone and pools once in {time.perf_counter() - start:.0f} s (not timed below)")

    rates = {}
    for concurrency in (1, 2):
        config = load_config(
            REPO / "search_spaces" / "digits.yaml",
            fixed + [f"search.trials={args.trials}", f"search.concurrency={concurrency}"],
        )
        span = Span()
        options = SearchOptions(
            f"sqlite:///{home / 'mlflow.db'}", "scale", home / "tune", f"scale-c{concurrency}", callbacks=[span]
        )
        summary = run_search(config, options)
        seconds = span.last - span.first
        rates[concurrency] = summary.trials / seconds * 60
        print(
            f"concurrency {concurrency}: {summary.trials} trials in {seconds:6.1f} s = {rates[concurrency]:5.2f} trials/min "
            f"(best val_acc {summary.best_val_acc:.3f})",
            flush=True,
        )
    print(f"ratio concurrency 2 / 1 = {rates[2] / rates[1]:.2f}  (goal >= 1.7 on 2 cores with 1-CPU trials)")
    if not args.load_trials:
        return

    config = load_config(
        REPO / "search_spaces" / "digits.yaml",
        fixed + [f"search.trials={args.load_trials}", "search.concurrency=2", "train.epochs=1", "train.steps_per_epoch=2"],
    )
    options = SearchOptions(f"sqlite:///{home / 'mlflow.db'}", "scale", home / "tune", "scale-load")
    import psutil

    before = psutil.Process().memory_info().rss
    print(f"driver RSS before the {args.load_trials}-trial search: {before / 2**30:.2f} GiB", flush=True)
    start = time.perf_counter()
    with PeakRSS() as peak:
        summary = run_search(config, options)
    after = psutil.Process().memory_info().rss
    print(
        f"{summary.trials} trials finished in {time.perf_counter() - start:.0f} s; driver RSS peak "
        f"{peak.peak / 2**30:.2f} GiB, after {after / 2**30:.2f} GiB "
        f"(+{(after - before) / 2**20 / max(summary.trials, 1):.2f} MiB per trial)  (goal: peak < 2 GiB)"
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
