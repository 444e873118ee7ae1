"""Warm start: the finished trials of earlier searches seed a new search's searcher.

``--warm-start SOURCE`` names an MLflow experiment (every finished trial in it) or a
search's parent run id (its finished trials). A trial is compatible when it logged a
value for every dimension the new space searches, each inside the new bounds (or among
the new choices); its parameters and final ``val_acc`` are told to the searcher through
Ray's ``Searcher.add_evaluated_point`` once Tune has given the searcher its space
(:class:`raysynth.search.searchers.base.WarmStartable`). Incompatible trials are skipped and counted.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from raysynth.config import ConfigError, flatten_params, nest_params
from raysynth.tracking.mlflow_runs import KIND_TAG, PARENT_TAG, STATUS_TAG, mlflow_key

log = logging.getLogger(__name__)
RUN_ID = re.compile(r"[0-9a-f]{32}")


def _flat_domains(space: dict) -> dict[str, Any]:
    """A Tune param space -> {flat key as logged to MLflow: domain} (searched dimensions only)."""
    from ray.tune.search.sample import Domain

    return {k: v for k, v in flatten_params(space).items() if isinstance(v, Domain)}


def _parse(text: str, domain) -> Any:
    """A logged parameter (a string) as a value of ``domain``; None if outside it."""
    from ray.tune.search.sample import Categorical, Float, Integer

    try:
        if isinstance(domain, Categorical):
            return next((c for c in domain.categories if str(c) == text), None)
        value = float(text)
        if isinstance(domain, Integer):
            value = int(value)
            return value if domain.lower <= value < domain.upper else None
        if isinstance(domain, Float):
            return value if domain.lower <= value <= domain.upper else None
    except ValueError:
        return None
    return None


def earlier_trials(tracking_uri: str, source: str, param_space: dict, metric: str = "val_acc") -> tuple[list[tuple[dict, float]], int]:
    """(compatible finished trials as (params, value), number skipped) of ``source``."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    missing = f"--warm-start: no MLflow experiment or run '{source}' in {tracking_uri}"
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).expanduser().is_file():
        raise ConfigError(missing)  # no store yet: nothing to read (and opening it would create it)
    client = MlflowClient(tracking_uri)
    finished = f"tags.`{KIND_TAG}` = 'trial' and tags.`{STATUS_TAG}` = 'finished'"
    experiment = client.get_experiment_by_name(source)
    if experiment is not None:
        runs = client.search_runs([experiment.experiment_id], filter_string=finished, max_results=50000)
    elif RUN_ID.fullmatch(source):
        try:
            parent = client.get_run(source)
        except MlflowException:
            raise ConfigError(missing) from None
        runs = client.search_runs(
            [parent.info.experiment_id], filter_string=f"{finished} and tags.`{PARENT_TAG}` = '{source}'", max_results=50000
        )
    else:
        raise ConfigError(missing)
    domains = _flat_domains(param_space)
    points, skipped = [], 0
    for run in runs:
        values = {key: _parse(run.data.params.get(mlflow_key(key), ""), d) for key, d in domains.items()}
        value = run.data.metrics.get(metric)
        if value is None or any(v is None for v in values.values()):
            skipped += 1
            continue
        points.append((nest_params(values), float(value)))
    return points, skipped


def warm_points(options, param_space: dict) -> list[tuple[dict, float]] | None:
    """The finished trials of ``options.warm_start`` the searcher starts from (None: no
    warm start, or a resumed search, whose searcher already holds them)."""
    if not options.warm_start or options.resume:
        return None
    warm, skipped = earlier_trials(options.tracking_uri, options.warm_start, param_space)
    log.info("warm start from %s: %d finished trials for the searcher (%d skipped: another space or unfinished)",
             options.warm_start, len(warm), skipped)
    return warm
