"""The search driver: prepare shared artifacts, run Ray Tune, retrain the winner, track.

Order of work (data flows one way): dataset -> backbone weights and synthetic pools
(once, cached) -> trials (Tune, each only loads) -> final retraining of the best config
and two baselines through Ray Train -> MLflow.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raysynth.config import Config, ConfigError, dump_yaml, raysynth_home
from raysynth.data.base import audit_event
from raysynth.search.weights import measure_context
from raysynth.search.space import Space, apply_params, clusters_in, flatten_params, parse_space, strengths_in

log = logging.getLogger(__name__)


@dataclass
class SearchOptions:
    tracking_uri: str
    experiment: str
    storage: Path
    name: str
    resume: bool = False
    # extra Ray Tune callbacks of a caller (fault-injection tests, chaos benchmark); a
    # resumed search keeps the callbacks it was started with (Tune restores them)
    callbacks: list = field(default_factory=list)


@dataclass
class FinalResult:
    label: str
    test_acc: float
    val_acc: float
    weights: list[float] | None
    test_acc_std: float = 0.0
    confusion: list[list[int]] | None = None


@dataclass
class SearchSummary:
    parent_run_id: str
    best_params: dict[str, Any]
    best_val_acc: float
    classes: list[str]
    quality: dict[str, str]
    finals: list[FinalResult] = field(default_factory=list)
    top_weights: dict[str, float] = field(default_factory=dict)
    best_weights: list[float] | None = None
    trials: int = 0
    seconds: float = 0.0


CONFIG_RECORD = "raysynth_config.json"  # the config a search was started with (checked on --resume)


def preflight(config: Config, options: SearchOptions) -> None:
    """Bad input the config cannot show, found before anything is started or written:
    an unwritable storage path, an unreachable tracking server, a resume with another
    config. Each a one-line ConfigError (exit 2)."""
    import tempfile
    import urllib.error
    import urllib.request

    try:
        options.storage.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=options.storage):
            pass
    except OSError as exc:
        raise ConfigError(f"--storage: cannot write to {options.storage} ({exc.strerror or exc})") from None
    uri = options.tracking_uri
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"--tracking-uri: no MLflow server answers at {uri} ({reason})") from None
    elif uri.startswith("sqlite:///"):
        parent = Path(uri[len("sqlite:///"):]).expanduser().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=parent):
                pass
        except OSError as exc:
            raise ConfigError(f"--tracking-uri: cannot write the MLflow store in {parent} ({exc.strerror or exc})") from None
    if options.resume:
        record = options.storage / options.name / CONFIG_RECORD
        if record.is_file():
            old = flatten_params(json.loads(record.read_text()), sep=".")
            new = flatten_params(config.to_dict(), sep=".")
            # how many trials run at once may change between runs; nothing else may
            differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k != "search.concurrency")
            if differ:
                k = differ[0]
                raise ConfigError(
                    f"--resume: search '{options.name}' was started with another config ({k}: {old.get(k)!r} then, "
                    f"{new.get(k)!r} now; {len(differ)} field(s) differ)"
                )


def check_ray_address(address: str) -> None:
    """A quick TCP probe of ``RAY_ADDRESS`` (host:port of a GCS): ray.init() itself keeps
    retrying an unreachable address for minutes."""
    import socket

    if address in ("auto", "local") or address.startswith("ray://"):
        return
    if address.startswith(("http://", "https://")):
        raise ConfigError(
            f"RAY_ADDRESS={address}: that is a dashboard/job-submission URL; unset it and pass "
            "--address to `ray job submit`, or set RAY_ADDRESS to the head's host:6379"
        )
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"RAY_ADDRESS={address}: no Ray cluster reachable ({getattr(exc, 'strerror', None) or exc})") from None


# A cluster raysynth starts itself listens on this machine only.
LOCAL_RAY = {"dashboard_host": "127.0.0.1"}


def connect_ray() -> None:
    """Attach to a running cluster (a submitted job, a local `ray start` head), else start one."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        check_ray_address(os.environ["RAY_ADDRESS"])
        try:
            ray.init()
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ConfigError(f"RAY_ADDRESS={os.environ['RAY_ADDRESS']}: no Ray cluster reachable ({first})") from None
        return
    try:
        ray.init(address="auto")
    except ConnectionError:
        # the dashboard serves the state API that Ray Train's controller polls
        ray.init(**LOCAL_RAY)


def trial_resources(config: Config) -> dict[str, float]:
    """What one trial asks Ray for.

    In-trial path: the trial is the worker (``search.resources``, default train.threads
    CPUs and a whole GPU when the cluster has one). TorchTrainer path: the trial only
    drives the trainer, whose workers ask for their own; the trial asks for none (a
    1-byte memory request because Ray refuses an empty resource bundle).
    """
    import ray

    if config.train.workers > 1:
        return {"cpu": 0, "memory": 1}
    resources = {"cpu": config.train.threads}
    if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0:
        resources["gpu"] = 1
    resources.update(config.search.resources)
    return resources


def tune_run_config(config: Config, name: str, storage: Path, callbacks: list):
    """Ray Tune's RunConfig for a search: retries, checkpoint retention, callbacks."""
    from ray import tune

    # frequent experiment snapshots (below) are intended: do not warn about them
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    return tune.RunConfig(
        name=name,
        storage_path=str(storage),
        callbacks=callbacks,
        verbose=0,
        # a trial that raises, hits a NaN loss or loses its process/node is retried from
        # its last checkpoint (objective.run_trial) up to max_failures times
        failure_config=tune.FailureConfig(max_failures=config.search.max_failures),
        # num_to_keep=1 also makes Tune snapshot the experiment state (trial table and
        # searcher) after every trial checkpoint, so a killed driver loses no finished epoch
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    )


def build_tuner(
    config: Config, space: Space, classes: list[str], options: SearchOptions, callbacks: list, weight_context=None
):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from raysynth.search.objective import run_trial
    from raysynth.search.searchers import SearcherOptions, build_searcher

    s = config.search
    trainable = tune.with_parameters(
        run_trial,
        base=config.to_dict(),
        home=str(raysynth_home()),
        storage_path=str(options.storage),
        weight_context=weight_context.to_dict() if weight_context is not None else None,
    )
    trainable = tune.with_resources(trainable, trial_resources(config))
    if s.scheduler.name == "asha":
        scheduler = ASHAScheduler(
            time_attr="epoch",
            max_t=config.train.epochs,
            grace_period=min(s.scheduler.grace_period, config.train.epochs),
            reduction_factor=s.scheduler.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    run_config = tune_run_config(config, options.name, options.storage, callbacks)
    if options.resume:
        # Tune restores the trial table, the searcher's state (SkoptSearch.save/restore, the
        # Optuna study) and the callbacks; unfinished trials continue from their checkpoints.
        # Trials that used up their retries stay failed: their reason is already recorded.
        path = str(options.storage / options.name)
        if tune.Tuner.can_restore(path):
            return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False)
        log.info("--resume: the search was stopped before Ray Tune saved any state; its trials start now")
    return tune.Tuner(
        trainable,
        param_space=space.to_tune(classes),
        tune_config=tune.TuneConfig(
            metric=s.metric,
            mode="max",
            search_alg=build_searcher(
                s.algorithm, SearcherOptions(s.metric, "max", s.seed, config.train.epochs, s.initial_points)
            ),
            scheduler=scheduler,
            num_samples=s.trials,
            max_concurrent_trials=s.concurrency,
            reuse_actors=True,
        ),
        run_config=run_config,
    )


def top_quartile_weights(results, epochs: int, classes: list[str], space: Space, context=None) -> dict[str, float]:
    """Mean weight per class over the best quarter of the finished trials: a steadier
    read of what the search learned than the single best trial, whose weights for a
    class that barely affects accuracy are noise."""
    from raysynth.search.weights import class_weights

    full = [r for r in results if r.error is None and r.metrics and r.metrics.get("epoch", 0) >= epochs]
    full.sort(key=lambda r: r.metrics["val_acc"], reverse=True)
    top = [class_weights(space.weights, r.config, classes, context) for r in full[: max(3, len(full) // 4)]]
    top = [w for w in top if w is not None]
    if not top:
        return {}
    return {c: sum(w[i] for w in top) / len(top) for i, c in enumerate(classes)}


def best_trial(results, epochs: int) -> tuple[dict[str, Any], float, int]:
    """(params, val_acc, trials) of the best trial that ran all epochs (ASHA-stopped
    trials are compared only if none finished: their values are not comparable)."""
    done = [r for r in results if r.error is None and r.metrics and "val_acc" in r.metrics]
    full = [r for r in done if r.metrics.get("epoch", 0) >= epochs] or done
    if not full:
        raise RuntimeError("no trial reported a validation accuracy")
    best = max(full, key=lambda r: r.metrics["val_acc"])
    return best.config, float(best.metrics["val_acc"]), len(done)


def run_final(config: Config, weights, use_synthetic: bool, name: str, storage: Path) -> dict:
    from raysynth.train.ray_train import fit_with_trainer

    return fit_with_trainer(config, weights, use_synthetic, name=name, storage_path=storage, evaluate_test=True)


def run_search(config: Config, options: SearchOptions) -> SearchSummary:
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    from raysynth.tracking.mlflow_runs import (
        KIND_TAG, TrialTracker, get_or_create_experiment, git_commit, log_params_batched,
    )
    from raysynth.tracking.progress import TrialProgress
    from raysynth.generators.quality import check_quality_classes
    from raysynth.train.task import cached_split, prepare

    start = time.perf_counter()
    space = parse_space(config.search.space, config)
    split = cached_split(config)
    check_quality_classes(config.pool.quality, split.classes)  # bad input: before anything starts
    preflight(config, options)
    connect_ray()
    prepared = prepare(config, strengths_in(space, config), clusters_in(space, config))
    log.info("prepared: backbone %s, pools %s (%d generated now)", prepared.weights, prepared.pool_keys, prepared.generated)
    context = measure_context(config, space)

    client = MlflowClient(options.tracking_uri)
    experiment_id = get_or_create_experiment(client, options.experiment)
    tags = {
        "raysynth.dataset": config.dataset,
        "raysynth.algorithm": config.search.algorithm,
        "raysynth.objective": "+".join(sorted(config.loss or {"ce": {}})),
        "raysynth.search": options.name,
    }
    marker = options.storage / options.name / "raysynth_parent_run.json"
    parent_id = None
    if options.resume and marker.is_file():
        parent_id = json.loads(marker.read_text())["run_id"]
        client.update_run(parent_id, status="RUNNING")
    if parent_id is None:
        parent = client.create_run(
            experiment_id,
            run_name=options.name,
            tags={
                **tags,
                KIND_TAG: "search",
                "raysynth.git_commit": git_commit(),
                "raysynth.dataset_fingerprint": split.fingerprint,
            },
        )
        parent_id = parent.info.run_id
        log_params_batched(client, parent_id, flatten_params(config.to_dict(), sep="."))
        client.log_text(parent_id, dump_yaml(config), "resolved_config.yaml")
        if context is not None:
            _log_weight_context(client, parent_id, context, split.classes)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"run_id": parent_id}))
        (marker.parent / CONFIG_RECORD).write_text(json.dumps(config.to_dict(), sort_keys=True))

    try:
        tracker = TrialTracker(options.tracking_uri, experiment_id, parent_id, tags, config.train.epochs)
        progress = TrialProgress(config.search.trials, config.train.epochs)
        tuner = build_tuner(config, space, split.classes, options, [tracker, progress, *options.callbacks], context)
        results = tuner.fit()
        params, val_acc, n_trials = best_trial(results, config.train.epochs)
        best_config, weights = apply_params(config, params, split.classes, context)
        summary = SearchSummary(parent_id, params, val_acc, split.classes, config.pool.quality, trials=n_trials)
        summary.best_weights = weights
        summary.top_weights = top_quartile_weights(results, config.train.epochs, split.classes, space, context)
        log.info("best trial: val_acc %.4f params %s", val_acc, flatten_params(params))
        # from here on the test split may be read: record when the search stopped choosing
        audit_event("search_finished", search=options.name)

        ones = [1.0] * split.num_classes
        finals = [
            ("best", best_config, weights, True),
            ("real_only", best_config, None, False),
            ("all_weights_1", best_config, ones, True),
        ]
        for label, cfg, w, syn in finals if config.search.final_eval else []:
            seeds = config.search.final_seeds
            log.info("final training '%s' over %d seeds (Ray Train, test split evaluated once)", label, seeds)
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, n_contr=max(cfg.train.n_contr, seeds)))
            metrics = run_final(cfg, w, syn, f"{options.name}-final-{label}", options.storage)
            summary.finals.append(
                FinalResult(
                    label, metrics["test_acc"], metrics["val_acc"], w, metrics.get("test_acc_std", 0.0),
                    json.loads(metrics["test_confusion"]) if "test_confusion" in metrics else None,
                )
            )

        now = int(time.time() * 1000)
        client.log_batch(
            parent_id,
            metrics=[Metric("best_val_acc", val_acc, now, 0), Metric("trials", n_trials, now, 0)]
            + [Metric(f"test_acc/{f.label}", f.test_acc, now, 0) for f in summary.finals]
            + [Metric(f"test_acc_std/{f.label}", f.test_acc_std, now, 0) for f in summary.finals]
            + [Metric(f"best_w/{c}", w, now, 0) for c, w in zip(split.classes, weights or [])]
            + [Metric(f"top_quartile_w/{c}", w, now, 0) for c, w in summary.top_weights.items()],
            tags=[RunTag("raysynth.best_params", json.dumps(flatten_params(params)))],
        )
        summary.seconds = time.perf_counter() - start
        log_search_report(client, parent_id, summary, results, config, best_config, space, context, options)
        client.set_terminated(parent_id, "FINISHED")
        return summary
    except BaseException:
        client.set_terminated(parent_id, "FAILED")
        raise


def log_search_report(client, parent_id, summary, results, config, best_config, space, context, options) -> None:
    """Plots, best config and the HTML report as artifacts of the parent run."""
    import tempfile


    from raysynth.tracking.report import SearchStory, write_search_report
    from raysynth.train.task import cached_split, train_data

    split = cached_split(config)
    epochs = config.train.epochs
    ended = [r for r in results if r.metrics and "val_acc" in r.metrics]
    finished = [r.metrics.get("epoch", 0) >= epochs for r in ended]
    rows = []
    for r, full in zip(ended, finished):
        if full:
            flat = {k: v for k, v in flatten_params(r.config).items() if not k.startswith(WEIGHT_PREFIXES)}
            rows.append({**{k: v for k, v in flat.items() if isinstance(v, (int, float))}, "val_acc": r.metrics["val_acc"]})
    real, synthetic = [], []
    syn = train_data(best_config, use_synthetic=True)
    for c in range(split.num_classes):
        real.append(split.train.images[split.train.labels == c][:4].numpy())
        synthetic.append(syn.syn_images[syn.syn_class == c][:4].numpy())
    if context is not None:
        quality = [f"q={q:+.2f}" for q in context.quality]
    else:
        quality = [config.pool.quality.get(c, "faithful") for c in split.classes]
    best_final = next((f for f in summary.finals if f.label == "best"), None)
    story = SearchStory(
        title=f"raysynth search {options.name} ({config.dataset}, {config.search.algorithm})",
        summary_text=format_summary(summary),
        classes=split.classes,
        best_weights=summary.best_weights,
        top_weights=[summary.top_weights[c] for c in split.classes] if summary.top_weights else None,
        quality_labels=quality,
        real_images=real,
        synthetic_images=synthetic,
        trial_scores=[float(r.metrics["val_acc"]) for r in ended],
        trial_finished=finished,
        trial_params=rows,
        confusion=best_final.confusion if best_final else None,
        best_config_yaml=dump_yaml(best_config_with_space(best_config)),
        finals=[{"label": f.label, "test_acc": f.test_acc, "test_acc_std": f.test_acc_std, "val_acc": f.val_acc} for f in summary.finals],
    )
    with tempfile.TemporaryDirectory() as d:
        write_search_report(story, Path(d))
        client.log_artifacts(parent_id, d)
    log.info("report: plots, best_config.yaml and report.html logged to the parent run %s", parent_id)


WEIGHT_PREFIXES = ("w/", "w_group/", "w_quality/")


def _log_weight_context(client, run_id: str, context, classes: list[str]) -> None:
    """q_c (and the groups) measured before the search, on the parent run."""
    from mlflow.entities import Metric

    from raysynth.tracking.mlflow_runs import log_params_batched

    now = int(time.time() * 1000)
    metrics = [Metric(f"quality/{c}", q, now, 0) for c, q in zip(classes, context.quality)]
    metrics += [Metric(f"discrepancy/{c}", d, now, 0) for c, d in zip(classes, context.discrepancy) if d == d]
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    if context.groups:
        log_params_batched(client, run_id, {f"group/{c}": g for c, g in zip(classes, context.groups)})


def best_config_with_space(config: Config) -> Config:
    """The winner as a re-runnable file: its values, with an empty search space."""
    import copy

    best = copy.deepcopy(config)
    best.search.space = {}
    return best


def format_summary(summary: SearchSummary) -> str:
    lines = [f"search finished: {summary.trials} trials in {summary.seconds:.0f} s, best val_acc {summary.best_val_acc:.4f}"]
    flat = flatten_params(summary.best_params)
    others = {k: v for k, v in flat.items() if not k.startswith("w/")}
    if others:
        lines.append("best config: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in others.items()))
    if summary.best_weights is not None:
        lines.append("learned per-class weights of the synthetic data (best trial; mean of the top quarter of trials):")
        for c, w in zip(summary.classes, summary.best_weights):
            q = summary.quality.get(c, "faithful")
            top = summary.top_weights.get(c)
            top_s = f"  top-quarter mean {top:.3f}" if top is not None else ""
            lines.append(f"  {c:>10s}  w={w:.3f}{top_s}  ({q})")
    lines.append("test accuracy, mean ± std over seeds (retrained with Ray Train after the search, test split touched once):")
    for f in summary.finals:
        lines.append(f"  {f.label:<14s} {f.test_acc:.4f} ± {f.test_acc_std:.4f}")
    return "\n".join(lines)
