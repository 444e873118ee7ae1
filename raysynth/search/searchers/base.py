"""The searcher registry: each file of this folder registers a builder that takes a
:class:`SearcherSpec` and returns a Ray Tune searcher. Two traps of model-based
searchers under ASHA and concurrency are handled by the searchers:

* **Mixed fidelity.** ASHA stops weak trials early; Ray's OptunaSearch would record them
  as COMPLETE with their partial score, and a GP fitted on a mix of 2-epoch and 6-epoch
  accuracies models noise. raysynth's searchers learn only from comparable values: a
  trial that did not reach ``max_epochs`` is told to Optuna as PRUNED (TPE ranks pruned
  trials below complete ones by their intermediate values; the GP ignores them), and the
  scikit-optimize GP is fitted on complete trials only (pruned points are remembered so
  they are not proposed again).
* **Duplicates.** Optuna's GPSampler can propose an already-evaluated point while other
  trials are running; a duplicate is never run: it is answered from the cache of
  finished values (so the sampler learns nothing new) and the sampler is asked again,
  falling back to a random point after a few tries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from raysynth.config import flatten_params
from raysynth.registry import Registry

SEARCHERS: Registry[Callable[["SearcherSpec"], Any]] = Registry("algorithm")
# a model that keeps proposing evaluated points is asked this often before a random point
DUPLICATE_RETRIES = 8


@dataclass
class SearcherSpec:
    """What a searcher is built from (the search section's settings); not to be confused
    with :class:`raysynth.search.options.SearchOptions`, the options of a whole search run."""

    metric: str
    mode: str
    seed: int
    max_epochs: int  # a trial that stops before this was pruned by ASHA
    initial_points: int = 10  # random points before a model-based searcher models
    # trials at once (0: no limit). Tune wraps a Searcher in its ConcurrencyLimiter from
    # TuneConfig.max_concurrent_trials; a generator that is not a Searcher (random) must
    # limit itself, or Tune ignores the limit
    concurrency: int = 0
    # Optuna searchers: the study's RDB storage URL (None: in memory) and its name
    study_storage: str | None = None
    study_name: str = "raysynth"


def register_searcher(name: str):
    return SEARCHERS.register(name)


def build_searcher(name: str, options: SearcherSpec):
    return SEARCHERS.get(name, "search.algorithm")(options)


def params_key(params: dict[str, Any]) -> str:
    """A trial's params as a canonical string (duplicate detection)."""
    flat = flatten_params(params)
    return json.dumps({k: (round(v, 12) if isinstance(v, float) else v) for k, v in flat.items()}, sort_keys=True)


class WarmStartable:
    """Mixin of raysynth's Searchers: points handed to :meth:`warm_start` before the
    search are told (``add_evaluated_point``) as soon as Tune sets the search space — the
    space must come from Tune, which refuses a searcher that already has one."""

    _warm_points: list[tuple[dict, float]] = []

    def warm_start(self, points: list[tuple[dict, float]]) -> None:
        self._warm_points = list(points)

    def _tell_warm_points(self) -> None:
        for params, value in self._warm_points:
            self.add_evaluated_point(params, value)
        self._warm_points = []

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        # (a searcher that defines its own set_search_properties calls _tell_warm_points)
        ready = super().set_search_properties(metric, mode, config, **spec)
        if ready:
            self._tell_warm_points()
        return ready
