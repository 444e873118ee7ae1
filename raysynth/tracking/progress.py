"""One log line per ended trial: status, score, best so far, done/running/pruned, rate, ETA.

Replaces Tune's per-trial config boxes, which are unreadable with 200 class weights.
"""

from __future__ import annotations

import logging
import time

from ray.tune import Callback

log = logging.getLogger("raysynth.search")


class TrialProgress(Callback):
    def __init__(self, total: int, max_epochs: int):
        self.total, self.max_epochs = total, max_epochs
        self.done, self.best, self.start = 0, float("-inf"), time.perf_counter()
        self.pruned = self.failed = 0
        self.epochs: dict[str, int] = {}
        self.scores: dict[str, float] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.epochs[trial.trial_id] = int(result.get("epoch", 0))
        self.scores[trial.trial_id] = float(result.get("val_acc", float("nan")))

    def _ended(self, trial, status: str, trials=()) -> None:
        self.done += 1
        epoch = self.epochs.get(trial.trial_id, 0)
        score = self.scores.get(trial.trial_id, float("nan"))
        if status == "completed":
            full = epoch >= self.max_epochs
            status = "finished" if full else "stopped by ASHA"
            if full:
                self.best = max(self.best, score)
            else:
                self.pruned += 1
        else:
            self.failed += 1
        minutes = (time.perf_counter() - self.start) / 60
        rate = self.done / max(minutes, 1e-9)
        running = sum(1 for t in trials if t.status == "RUNNING" and t is not trial)
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        log.info(
            "trial %d/%d %s %s at epoch %d: val_acc %.4f (best finished %.4f; running %d, pruned %d, failed %d; "
            "%.1f trials/min, ETA %.1f min)",
            self.done, self.total, trial.trial_id, status, epoch, score, self.best, running, self.pruned, self.failed,
            rate, eta,
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, "completed", trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, "FAILED", trials)
