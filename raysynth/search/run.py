"""The search driver: check, prepare, search, retrain the winner, track.

Data flows one way: dataset -> backbone weights and synthetic pools (once, cached) ->
trials (Ray Tune; each only loads) -> final retraining of the best config and two
baselines (Ray Train) -> MLflow.
"""

from __future__ import annotations

import logging
import time

from raysynth.cluster import (
    Capacity, check_cluster_fits, connect_ray, live_placement_groups, placement_groups_left, ray_run_tags, with_resolved_resources,
)
from raysynth.config import Config, ConfigError, flatten_params
from raysynth.context import split_of
from raysynth.data.base import audit_event
from raysynth.node_check import check_nodes
from raysynth.prepare import prepare
from raysynth.search.finals import run_finals
from raysynth.search.options import SearchOptions
from raysynth.search.preflight import config_record, preflight
from raysynth.search.results import SearchSummary, parameter_importances, search_story, summarize
from raysynth.search.space import parse_space
from raysynth.search.tuner import build_tuner
from raysynth.search.warm_start import warm_points
from raysynth.storage import write_text
from raysynth.tracking.mlflow_runs import TrialTracker
from raysynth.tracking.progress import TrialProgress
from raysynth.tracking.search_run import SearchRun

log = logging.getLogger(__name__)


def run_search(config: Config, options: SearchOptions) -> SearchSummary:
    start = time.perf_counter()
    # 1. bad input first: nothing is started or written before these pass
    space = parse_space(config.search.space, config)
    if not space.dimensions and space.weights is None:
        raise ConfigError("search.space: empty, nothing to search (add a dimension or class_weights; see search_spaces/digits.yaml)")
    plan = space.plan(config)  # the pools, K values and class quality the trials may ask for
    split = split_of(config)
    warm = warm_points(options, space.to_tune(split.classes))
    record = config_record(config, options)  # what a --resume is checked against (as given, before resolving)
    preflight(config, options, split.classes)
    # 2. the cluster: what it has and its autoscaler can add (a cold cluster has no GPU
    # node yet), then one unit of a trial's work placed as a trial is (on a cold cluster,
    # on the first node added): it must see the driver's home and a usable GPU
    connect_ray()
    held = live_placement_groups()  # the cluster's own, before this search (a shared cluster)
    capacity = Capacity.read()
    config = with_resolved_resources(config, capacity)  # `gpu: auto` -> what it means on this cluster
    check_cluster_fits(config, capacity)  # a unit no node type can hold: exit 2 before anything starts
    nodes = check_nodes(config)
    # 3. the parent MLflow run (adopted again on --resume), before the hours of preparation:
    # a tracking store that cannot take a run or an artifact fails now
    parent = SearchRun.open(
        options.tracking_uri, options.experiment, config, options.name, options.parent_record,
        split.fingerprint, options.resume, split.classes, ray_run_tags(),
    )
    # how long the first node took to answer (a cold cluster: the autoscaler's first node)
    parent.client.log_metric(parent.run_id, "cluster_first_node_s", nodes.seconds)
    write_text(options.config_record, record)
    try:
        # 4. what every trial shares, made once and named in the run context: backbone,
        # pools, partitions, class quality; the trials only load
        context = prepare(config, plan, elastic=capacity.autoscales, space=space)
        log.info("prepared: backbone %s, pools %s, %d partitions", context.backbone, context.pools, len(context.partitions))
    except BaseException:
        parent.finish(ok=False)
        raise
    quality = context.weights
    if quality is not None:
        parent.log_class_quality(split.classes, quality.quality, quality.discrepancy, quality.groups)
    monitor = parent.monitor_system()  # MLflow's system metrics of this machine on the parent run
    try:
        # 5. the trials
        tracker = TrialTracker(options.tracking_uri, parent.experiment_id, parent.run_id, parent.tags, config.train.epochs)
        progress = TrialProgress(config.search.trials, config.train.epochs)
        tuner = build_tuner(config, context, options, [tracker, progress, *options.callbacks], warm)
        results = tuner.fit()
        parent.log_trials_table(results.get_dataframe())
        if options.resume:
            parent.discard_lost_trials()
        # 6. the winner, and what the search learned
        summary, best_config = summarize(results, config, context, parent.run_id)
        log.info("best trial: val_acc %.4f params %s", summary.best_val_acc, flatten_params(summary.best_params))
        audit_event("search_finished", search=options.name)  # from here on the test split may be read
        # 7. finals: the winner and two baselines retrained, tested once
        if config.search.final_eval:
            summary.finals = run_finals(best_config, summary.best_weights, context, options.name, options.storage)
            parent.log_finals(summary.finals)
            summary.model_uri = parent.log_model(best_config, summary.finals, context, options.register)
        # 8. results and the report on the parent run
        summary.seconds = time.perf_counter() - start
        parent.log_results(summary.metrics(), summary.best_params)
        title = f"raysynth search {options.name} ({config.dataset}, {config.search.algorithm})"
        story = search_story(summary, results, config, best_config, context, title)
        if config.search.algorithm.startswith("optuna"):  # the study on disk (optuna-dashboard reads it too)
            story.importances = parameter_importances(options.study_storage, options.name)
        parent.log_report(story)
        placement_groups_left(held)  # Tune's and Ray Train's, each removed when its work ended
        parent.finish(ok=True)
        return summary
    except BaseException:
        parent.finish(ok=False)
        raise
    finally:
        monitor.finish()
