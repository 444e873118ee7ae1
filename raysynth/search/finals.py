"""After the search: the best config and two baselines retrained with Ray Train over
``search.final_seeds`` seeds, each evaluated once on the test split."""

from __future__ import annotations

import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor

from raysynth.config import Config
from raysynth.context import RunContext
from raysynth.search.results import FinalResult
from raysynth.train.ray_train import final_state, train_with_trainer

log = logging.getLogger(__name__)


def final_runs(weights: list[float] | None, num_classes: int) -> list[tuple[str, list[float] | None, bool]]:
    """(label, class weights, use synthetic) of the three finals: the search's best; real
    only; every synthetic class at weight 1 (what the search improves on)."""
    return [("best", weights, True), ("real_only", None, False), ("all_weights_1", [1.0] * num_classes, True)]


def run_finals(best_config: Config, weights: list[float] | None, context: RunContext, name: str, storage: str) -> list[FinalResult]:
    """The three finals at once, each its own Ray Train run (a thread per ``fit()``, which
    Ray Train supports): on a cluster they take three sets of workers side by side, and
    Ray queues what does not fit yet. Results come back in :func:`final_runs`' order."""
    runs = final_runs(weights, context.num_classes)
    seeds = best_config.search.final_seeds
    # the seeds are the n_contr repeats of one Ray Train run
    cfg = dataclasses.replace(best_config, train=dataclasses.replace(best_config.train, n_contr=max(best_config.train.n_contr, seeds)))

    def final(label: str, w: list[float] | None, use_synthetic: bool) -> FinalResult:
        log.info("final training '%s' over %d seeds (Ray Train, test split evaluated once)", label, seeds)
        result = train_with_trainer(cfg, w, context, use_synthetic, name=f"{name}-final-{label}", storage_path=storage, evaluate_test=True)
        metrics = dict(result.metrics or {})
        log.info("final '%s': test_acc %.4f", label, metrics["test_acc"])
        confusion = json.loads(metrics["test_confusion"]) if "test_confusion" in metrics else None
        # the first seed's trained weights (and two-stage classifiers): the searched model
        first = (final_state(result) or {"runs": [None]})["runs"][0]
        return FinalResult(
            label, metrics["test_acc"], metrics["val_acc"], w, metrics.get("test_acc_std", 0.0), confusion,
            node=str(metrics.get("node", "")), gpu_ids=str(metrics.get("gpu_ids", "")),
            model_test_acc=metrics.get("model_test_acc"),
            state={"model": first["model"], "probes": first["probes"]} if first else None,
        )

    with ThreadPoolExecutor(max_workers=len(runs), thread_name_prefix="final") as pool:
        futures = [pool.submit(final, *run) for run in runs]
        return [f.result() for f in futures]
