"""One log line per ended trial: status, score, best so far, done/running/pruned, rate, ETA.

Replaces Tune's per-trial config boxes, which are unreadable with 200 class weights.
"""

from __future__ import annotations

import logging
import time

from ray.tune import Callback

from raysynth.outcome import FINISHED, completed_outcome

log = logging.getLogger("raysynth.search")


class TrialProgress(Callback):
    def __init__(self, total: int, max_epochs: int):
        self.total, self.max_epochs = total, max_epochs
        self.done, self.best, self.start = 0, float("-inf"), time.perf_counter()
        self.pruned = self.failed = 0
        self.epochs: dict[str, int] = {}
        self.scores: dict[str, float] = {}

    def setup(self, **info):
        # a resumed search restores this callback from the first driver's pickle
        self.start = time.perf_counter()
        self.done = 0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.epochs[trial.trial_id] = int(result.get("epoch", 0))
        self.scores[trial.trial_id] = float(result.get("val_acc", float("nan")))

    def _ended(self, trial, status: str, trials=()) -> None:
        self.done += 1  # in this driver: the rate
        # in the whole search (a resumed one restores ended trials): the count and the ETA
        done = 1 + sum(1 for t in trials if t is not trial and t.status in ("TERMINATED", "ERROR"))
        # a trial resumed from its final checkpoint reports nothing new: use its last result
        last = trial.last_result or {}
        epoch = self.epochs.get(trial.trial_id, int(last.get("epoch", 0)))
        score = self.scores.get(trial.trial_id, float(last.get("val_acc", float("nan"))))
        if status == "completed":
            full = completed_outcome(epoch, self.max_epochs) == FINISHED
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
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        log.info(
            "trial %d/%d %s %s at epoch %d: val_acc %.4f (best finished %.4f; running %d, pruned %d, failed %d; "
            "%.1f trials/min, ETA %.1f min)",
            done, self.total, trial.trial_id, status, epoch, score, self.best, running, self.pruned, self.failed,
            rate, eta,
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, "completed", trials)

    def on_trial_recover(self, iteration, trials, trial, **info):
        log.info("trial %s failed at epoch %d; retry %d from its last checkpoint",
                 trial.trial_id, self.epochs.get(trial.trial_id, 0), trial.run_metadata.num_failures)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, "FAILED", trials)
