"""The MLflow parent run of a search: created once (adopted again on ``--resume``), holding
the resolved config, the tags every trial's child run shares, the measured per-class
quality, the results and the report."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

from raysynth.config import Config, ConfigError, dump_yaml, flatten_params
from raysynth.storage import exists, read_text, write_text
from raysynth.tracking.mlflow_runs import KIND_TAG, PARENT_TAG, get_or_create_experiment, git_commit, log_params, metric, mlflow_key
from raysynth.tracking.report import SearchStory, write_search_report

log = logging.getLogger(__name__)


def search_tags(config: Config, name: str) -> dict[str, str]:
    """Tags of the parent run and of every trial's child run (leaderboard filters)."""
    return {
        "raysynth.dataset": config.dataset,
        "raysynth.algorithm": config.search.algorithm,
        "raysynth.objective": "+".join(sorted(config.loss or {"ce": {}})),
        "raysynth.search": name,
    }


def _read_back(client: MlflowClient, run_id: str, path: str, text: str, tracking_uri: str) -> None:
    """The artifact just written, read back: an artifact store the driver can write but
    not read (or that drops what it is given) fails now, not after the search."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            got = Path(client.download_artifacts(run_id, path, tmp)).read_text()
        except Exception as exc:  # the store's own errors (boto, HTTP, OS)
            client.set_terminated(run_id, status="FAILED")
            raise ConfigError(f"--tracking-uri {tracking_uri}: an artifact written to the run cannot be read back "
                              f"({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
    if got != text:
        client.set_terminated(run_id, status="FAILED")
        raise ConfigError(f"--tracking-uri {tracking_uri}: the artifact store returned another {path} than was written")


def log_dataset_input(client: MlflowClient, run_id: str, config: Config, dataset_fingerprint: str, num_classes: int) -> None:
    """The few-shot split as the run's MLflow dataset input (Runs -> Datasets used): the
    dataset and its split settings, digest = raysynth's split fingerprint."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    d = config.data
    source = CodeDatasetSource({
        "dataset": config.dataset, "root": d.root or "(built in)", "shots": str(d.shots), "seed": str(d.seed),
        "val_per_class": str(d.val_per_class), "test_per_class": str(d.test_per_class), "classes": str(num_classes),
    })
    dataset = MetaDataset(source, name=f"{config.dataset}-{d.shots}shot", digest=dataset_fingerprint[:36])
    client.log_inputs(run_id, [DatasetInput(dataset._to_mlflow_entity(), [InputTag("mlflow.data.context", "training")])])


class SearchRun:
    """The parent run: ``open`` it, log to it, then ``finish`` it (FINISHED or FAILED)."""

    def __init__(self, client: MlflowClient, experiment_id: str, run_id: str, tags: dict[str, str]):
        self.client, self.experiment_id, self.run_id, self.tags = client, experiment_id, run_id, tags

    @classmethod
    def open(
        cls, tracking_uri: str, experiment: str, config: Config, name: str, record: str, dataset_fingerprint: str, resume: bool,
        classes: list[str] = (), ray_tags: dict[str, str] | None = None,
    ) -> "SearchRun":
        """The search's parent run: on ``resume`` the one named in ``record``, else a new
        one with the resolved config, whose id is written to ``record``."""
        client = MlflowClient(tracking_uri)
        experiment_id = get_or_create_experiment(client, experiment)
        tags = {**search_tags(config, name), **(ray_tags or {})}  # trials' runs carry them too
        if resume and exists(record):
            run_id = json.loads(read_text(record))["run_id"]
            client.update_run(run_id, status="RUNNING")
            return cls(client, experiment_id, run_id, tags)
        parent_tags = {**tags, KIND_TAG: "search", "raysynth.git_commit": git_commit(), "raysynth.dataset_fingerprint": dataset_fingerprint}
        run_id = client.create_run(experiment_id, run_name=name, tags=parent_tags).info.run_id
        log_params(client, run_id, flatten_params(config.to_dict(), sep="."))
        client.log_text(run_id, dump_yaml(config), "resolved_config.yaml")
        _read_back(client, run_id, "resolved_config.yaml", dump_yaml(config), tracking_uri)
        log_dataset_input(client, run_id, config, dataset_fingerprint, len(classes))
        # a class name MLflow refuses in a key appears under another key (tracking.mlflow_runs.mlflow_key)
        client.log_dict(run_id, [{"class": c, "mlflow_key": mlflow_key(c)} for c in classes], "class_names.json")
        write_text(record, json.dumps({"run_id": run_id}))
        return cls(client, experiment_id, run_id, tags)

    def log_class_quality(self, classes: list[str], quality: list[float], discrepancy: list[float], groups: list[int]) -> None:
        """q_c and d_c (and the groups) measured before the search."""
        now = int(time.time() * 1000)
        metrics = [metric(f"quality/{c}", q, now, 0) for c, q in zip(classes, quality)]
        metrics += [metric(f"discrepancy/{c}", d, now, 0) for c, d in zip(classes, discrepancy) if d == d]
        self.client.log_batch(self.run_id, metrics=metrics)  # MLflow splits it into requests of its limits
        if groups:
            log_params(self.client, self.run_id, {f"group/{c}": g for c, g in zip(classes, groups)})

    def log_results(self, metrics: dict[str, float], best_params: dict[str, Any]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[metric(k, v, now, 0) for k, v in metrics.items()],
            tags=[RunTag("raysynth.best_params", json.dumps(flatten_params(best_params)))],
        )

    def log_trials_table(self, frame) -> None:
        """Ray Tune's results table (one row per trial: last metrics and config) as
        ``trials.csv``."""
        self.client.log_text(self.run_id, frame.to_csv(index=False), "trials.csv")

    def log_finals(self, finals: list) -> None:
        """One child run per final retraining (kind ``final``): its test and validation
        accuracy and where it ran (``raysynth.node``, ``raysynth.gpu_ids``)."""
        for final in finals:
            tags = {**self.tags, KIND_TAG: "final", PARENT_TAG: self.run_id, "raysynth.final": final.label,
                    "raysynth.node": final.node, "raysynth.gpu_ids": final.gpu_ids}
            run_id = self.client.create_run(self.experiment_id, run_name=f"final-{final.label}", tags=tags).info.run_id
            now = int(time.time() * 1000)
            values = {"test_acc": final.test_acc, "test_acc_std": final.test_acc_std, "val_acc": final.val_acc}
            self.client.log_batch(run_id, metrics=[metric(k, v, now, 0) for k, v in values.items()])
            self.client.set_terminated(run_id, "FINISHED")

    def log_model(self, best_config, finals: list, context, register: str | None = None) -> str | None:
        """The best final's first-seed classifier as an MLflow model at ``model`` on this
        run (:mod:`raysynth.tracking.model`); its URI, None if the finals kept no state."""
        from raysynth.tracking.model import log_searched_model

        best = next((f for f in finals if f.label == "best"), None)
        if best is None or best.state is None:
            log.warning("model: the best final kept no checkpoint; no model logged")
            return None
        return log_searched_model(self.client, self.run_id, best_config, best.state, context, register)

    def log_report(self, story: SearchStory) -> None:
        """Plots, best config and the HTML report as artifacts of the parent run."""
        with tempfile.TemporaryDirectory() as d:
            write_search_report(story, Path(d))
            self.client.log_artifacts(self.run_id, d)
        log.info("report: plots, best_config.yaml and report.html logged to the parent run %s", self.run_id)

    def discard_lost_trials(self) -> int:
        """Child runs still RUNNING once Tune has ended every trial it knows: trials a
        killed driver had started but Tune never recorded, so ``--resume`` ran others in
        their place. They are deleted (MLflow keeps deleted runs restorable), not left
        running forever beside the search's real trials. Returns how many."""
        lost = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.run_id}' and tags.`{KIND_TAG}` = 'trial' and attributes.status = 'RUNNING'",
        )
        for run in lost:
            log.warning(
                "trial %s: started by a driver that died before Ray Tune recorded it; the resumed search ran "
                "another trial in its place, so its MLflow run %s is deleted", run.data.tags.get("raysynth.trial_id"), run.info.run_id,
            )
            self.client.delete_run(run.info.run_id)
        return len(lost)

    def monitor_system(self, interval: float = 5.0):
        """MLflow's system metrics (``system/cpu_utilization_percentage``, memory, disk,
        network, GPU where one is) of the driver's machine, logged on the parent run every
        ``interval`` seconds until :meth:`finish`. Trials' machines are the same one on a
        single node; on a cluster these are the head's."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(self.run_id, sampling_interval=interval, tracking_uri=self.client.tracking_uri)
        monitor.start()
        return monitor

    def finish(self, ok: bool = True) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")
