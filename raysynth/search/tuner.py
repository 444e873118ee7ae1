"""Building the Ray Tune Tuner of a search: the trial function with its resources, the
searcher and scheduler from their registries, retries and checkpoints; or the Tuner of
an interrupted search, restored."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from raysynth.cluster import pending_timeout, trial_resources
from raysynth.config import Config
from raysynth.context import RunContext
from raysynth.search.trial import run_trial
from raysynth.search.options import SearchOptions
from raysynth.search.schedulers import build_scheduler
from raysynth.search.searchers import SearcherSpec, build_searcher

log = logging.getLogger(__name__)


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
        # its last checkpoint (trial.run_trial) up to max_failures times
        failure_config=tune.FailureConfig(max_failures=config.search.max_failures),
        # num_to_keep=1 also makes Tune snapshot the experiment state (trial table and
        # searcher) after every trial checkpoint, so a killed driver loses no finished epoch
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
    )


def build_tuner(config: Config, context: RunContext, options: SearchOptions, callbacks: list, warm_points: list | None = None):
    """The Tuner of a search: every trial is :func:`raysynth.search.trial.run_trial` on
    ``context`` (its space, its prepared artifacts)."""
    from ray import tune
    from ray.tune.search import Searcher

    s = config.search
    trainable = tune.with_parameters(
        run_trial,
        base=config.to_dict(),
        context=context,
        storage_path=str(options.storage),
    )
    resources = trial_resources(config)
    waiting = pending_timeout(config.search.resource_wait_s, resources)  # a cluster that never gives them
    trainable = tune.with_resources(trainable, {k.lower(): v for k, v in resources.items()})
    run_config = tune_run_config(config, options.name, options.storage, [*callbacks, waiting])
    if options.resume:
        # Tune restores the trial table, the searcher's state (SkoptSearch.save/restore, the
        # Optuna study) and the callbacks; unfinished trials continue from their checkpoints.
        # Trials that used up their retries stay failed: their reason is already recorded.
        path = str(options.directory)
        if tune.Tuner.can_restore(path):
            return tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False)
        log.info("--resume: the search was stopped before Ray Tune saved any state; its trials start now")
    study = options.study_storage
    if study.startswith("sqlite:///"):
        Path(study[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    searcher = build_searcher(s.algorithm, SearcherSpec(
        s.metric, "max", s.seed, config.train.epochs, s.initial_points, s.concurrency, study_storage=study, study_name=options.name,
    ))
    if warm_points:
        if hasattr(searcher, "warm_start"):
            searcher.warm_start(warm_points)  # told once Tune sets the space (add_evaluated_point)
        else:
            log.info("warm start: %s samples at random and has nothing to learn from earlier trials", s.algorithm)
    return tune.Tuner(
        trainable,
        param_space=context.space.to_tune(list(context.classes)),
        tune_config=tune.TuneConfig(
            metric=s.metric,
            mode="max",
            search_alg=searcher,
            scheduler=build_scheduler(config),
            num_samples=s.trials,
            # a Searcher is wrapped in Tune's ConcurrencyLimiter; random limits itself
            max_concurrent_trials=s.concurrency if isinstance(searcher, Searcher) else None,
            reuse_actors=True,
        ),
        run_config=run_config,
    )
