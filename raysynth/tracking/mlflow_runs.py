"""MLflow runs of a search.

One experiment per dataset; a parent run per search (resolved config, algorithm, git
commit, dataset fingerprint, final test results); a child run per trial, written by
:class:`TrialTracker`, a Ray Tune callback that runs in the driver — the only process
that touches the store, so a sqlite file is safe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from raysynth.config import flatten_params
from raysynth.outcome import completed_outcome
from raysynth.tracking.stores import artifact_location

log = logging.getLogger(__name__)

KIND_TAG = "raysynth.kind"  # "search" (parent) or "trial" (child)
STATUS_TAG = "raysynth.status"  # finished | pruned | failed
PARENT_TAG = "mlflow.parentRunId"
METRIC_KEYS = ("val_acc", "val_acc_std", "loss")
TERM_PREFIX = "loss_"  # every objective term the loop reports (loss_ce_real, loss_discrepancy, ...)


def _as_param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


# what MLflow accepts in a key segment on every platform (mlflow.utils.validation): letters,
# digits, '_', '-', '.', ' '; '/' separates segments
_REFUSED = re.compile(r"[^\w.\- ]")


def mlflow_key(key: str) -> str:
    """A param/metric key MLflow accepts, for any class name inside it.

    Each '/'-separated segment MLflow would refuse (Flowers102's "colt's foot", a
    "." or "..") has every refused character replaced by '_' and gets '-' plus the first
    8 hex digits of the SHA-256 of the original segment appended: "w/colt's foot" ->
    "w/colt_s foot-<hash>". Valid keys are unchanged, and two different names never
    share a key (the hash tells them apart). The parent run's ``class_names.json``
    lists each class with its key."""
    segments = []
    for segment in key.split("/"):
        if _REFUSED.search(segment) or segment.strip(".") == "":
            digest = hashlib.sha256(segment.encode()).hexdigest()[:8]
            segment = f"{_REFUSED.sub('_', segment)}-{digest}"
        segments.append(segment)
    return "/".join(segments)


def metric(key: str, value: float, timestamp: int, step: int) -> Metric:
    return Metric(mlflow_key(key), float(value), timestamp, step)


def log_params(client: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    """Every param in one ``log_batch`` call (MLflow splits it into requests of its limits)."""
    client.log_batch(run_id, params=[Param(mlflow_key(k), _as_param(v)) for k, v in params.items()])


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parents[2],
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def trial_error_reason(trial) -> str:
    """The last line of a failed trial's traceback (the exception), else its error file."""
    text = ""
    try:
        # the driver's local copy exists at once; the storage copy may still be syncing
        if trial.error_file and os.path.isfile(trial.error_file):
            text = Path(trial.error_file).read_text(errors="replace")
        else:
            error = trial.get_error()
            text = str(error) if error is not None else ""
    except Exception:  # an unreadable error file must not break tracking
        text = ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    exception_lines = [line for line in lines if "Error" in line.split(":")[0] or "Exception" in line.split(":")[0]]
    if exception_lines:
        return exception_lines[-1][:5000]
    return (lines[-1] if lines else str(getattr(trial, "error_file", "") or "error"))[:5000]


def get_or_create_experiment(client: MlflowClient, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=artifact_location(client.tracking_uri, name))


class TrialTracker(Callback):
    """Ray Tune callback: one MLflow child run per trial, metrics per epoch, status.

    Faults: a retried trial keeps its run (tags ``raysynth.retries`` and
    ``raysynth.last_error``); a failed one ends FAILED with ``raysynth.error``. A resumed
    search (``--resume`` after the driver died) finds the child runs already in MLflow
    by their ``raysynth.trial_id`` tag, so no trial gets a second run, and an epoch a
    trial redoes after its checkpoint is not logged twice.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, tags: dict[str, str], max_epochs: int):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.tags = tags
        self.max_epochs = max_epochs
        self.runs: dict[str, str] = {}  # trial id -> run id
        self.last_epoch: dict[str, int] = {}  # trial id -> last epoch logged to MLflow
        self.nodes: dict[str, str] = {}  # trial id -> node it last reported from
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def __getstate__(self):  # Tune pickles callbacks into its experiment state
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    def setup(self, **info):
        """Adopt the child runs a previous driver of this search created (``--resume``)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_run_id}' and tags.`{KIND_TAG}` = 'trial'",
            max_results=50000,
        )
        for run in runs:
            trial_id = run.data.tags.get("raysynth.trial_id")
            if trial_id and trial_id not in self.runs:
                self.runs[trial_id] = run.info.run_id
        if runs:
            log.info("resumed search: %d trial runs already in MLflow are continued, not duplicated", len(runs))

    def _logged_epoch(self, trial_id: str) -> int:
        if trial_id not in self.last_epoch:
            history = self.client.get_metric_history(self.runs[trial_id], "val_acc")
            self.last_epoch[trial_id] = max((m.step for m in history), default=0)
        return self.last_epoch[trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        run_id = self.runs.get(trial.trial_id)
        if run_id is not None:
            # a trial restarted after a fault or a resume: the same run goes on
            if self.client.get_run(run_id).info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            return
        tags = {**self.tags, KIND_TAG: "trial", PARENT_TAG: self.parent_run_id, "raysynth.trial_id": trial.trial_id}
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{trial.trial_id}", tags=tags)
        self.runs[trial.trial_id] = run.info.run_id
        self.last_epoch[trial.trial_id] = 0
        log_params(self.client, run.info.run_id, flatten_params(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id = self.runs.get(trial.trial_id)
        if run_id is None:
            return
        epoch = int(result.get("epoch", result.get("training_iteration", 0)))
        if epoch <= self._logged_epoch(trial.trial_id):
            return  # redone after a restore from an earlier checkpoint: already logged
        self.last_epoch[trial.trial_id] = epoch
        now = int(time.time() * 1000)
        keys = [k for k in result if k in METRIC_KEYS or k.startswith(TERM_PREFIX)]
        metrics = [metric(k, result[k], now, epoch) for k in keys if isinstance(result[k], (int, float))]
        tags = []
        node = result.get("node")
        if node and self.nodes.get(trial.trial_id) != node:
            # where the trial runs (again after a retry on another node): node and Ray GPU ids
            self.nodes[trial.trial_id] = node
            tags += [RunTag("raysynth.node", str(node)), RunTag("raysynth.gpu_ids", str(result.get("gpu_ids", "")))]
        if metrics or tags:
            self.client.log_batch(run_id, metrics=metrics, tags=tags)

    def on_trial_complete(self, iteration, trials, trial, **info):
        run_id = self.runs.get(trial.trial_id)
        if run_id is None:
            return
        epoch = self._logged_epoch(trial.trial_id)
        status = completed_outcome(epoch, self.max_epochs)
        self.client.log_batch(run_id, tags=[RunTag(STATUS_TAG, status), RunTag("raysynth.epochs", str(epoch))])
        self.client.set_terminated(run_id, "FINISHED")

    def on_trial_recover(self, iteration, trials, trial, **info):
        """A failed trial that Tune retries from its last checkpoint."""
        run_id = self.runs.get(trial.trial_id)
        if run_id is None:
            return
        reason = trial_error_reason(trial)
        log.warning("trial %s failed (%s); retry %d from its last checkpoint", trial.trial_id, reason, trial.run_metadata.num_failures)
        self.client.log_batch(
            run_id, tags=[RunTag("raysynth.retries", str(trial.run_metadata.num_failures)), RunTag("raysynth.last_error", reason[:5000])]
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self.runs.get(trial.trial_id)
        if run_id is None:
            return
        reason = trial_error_reason(trial)
        self.client.log_batch(
            run_id,
            tags=[
                RunTag(STATUS_TAG, "failed"),
                RunTag("raysynth.error", reason[:5000]),
                RunTag("raysynth.retries", str(max(trial.run_metadata.num_failures - 1, 0))),
            ],
        )
        self.client.set_terminated(run_id, "FAILED")
