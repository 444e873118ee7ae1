"""Ray's OptunaSearch, made safe under ASHA and concurrency (the base of optuna-tpe and
optuna-gp): a trial ASHA stopped early is told to Optuna as PRUNED, not COMPLETE with its
partial score; a proposed duplicate of an evaluated point is never run — it is answered
from the cache of finished values and the sampler is asked again, falling back to a
random point after a few tries.
"""

from __future__ import annotations

import functools
import logging

from raysynth.config import flatten_params
from raysynth.outcome import PRUNED, trial_outcome
from raysynth.search.searchers.base import DUPLICATE_RETRIES, WarmStartable, params_key

log = logging.getLogger(__name__)


def study_kwargs(o) -> dict:
    """OptunaSearch's ``storage`` and ``study_name`` from the options: an RDB study that
    optuna-dashboard and ``optuna.load_study`` read, and that ``--resume`` continues."""
    if not o.study_storage:
        return {}
    import optuna

    return {"storage": optuna.storages.RDBStorage(o.study_storage), "study_name": o.study_name}


@functools.cache
def fidelity_aware_optuna_search():
    """The class (built on first use: importing Ray's OptunaSearch imports optuna)."""
    from ray.tune.search.optuna import OptunaSearch

    class FidelityAwareOptunaSearch(WarmStartable, OptunaSearch):
        """OptunaSearch that tells ASHA-stopped trials as PRUNED and never runs a duplicate."""

        def __init__(self, *args, max_epochs: int, seed: int, **kwargs):
            super().__init__(*args, **kwargs)
            self._max_epochs = max_epochs
            self._seed = seed
            self._proposed: dict[str, str] = {}  # params key -> trial id
            self._values: dict[str, float] = {}  # params key -> finished value

        def suggest(self, trial_id: str):
            import optuna

            for attempt in range(DUPLICATE_RETRIES + 1):
                if attempt == DUPLICATE_RETRIES:
                    # the model keeps proposing evaluated points: one random point instead
                    sampler = self._ot_study.sampler
                    self._ot_study.sampler = optuna.samplers.RandomSampler(seed=self._seed + len(self._proposed))
                    try:
                        params = super().suggest(trial_id)
                    finally:
                        self._ot_study.sampler = sampler
                else:
                    params = super().suggest(trial_id)
                key = params_key(params)
                if key not in self._proposed:
                    self._proposed[key] = trial_id
                    return params
                ot_trial = self._ot_trials.pop(trial_id)
                log.debug("searcher proposed a duplicate of trial %s; asking again", self._proposed[key])
                if key in self._values:
                    self._ot_study.tell(ot_trial, self._values[key])
                else:  # the original is still running
                    self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            return params

        def add_evaluated_point(self, parameters: dict, value: float, error: bool = False, pruned: bool = False,
                                intermediate_values=None):
            """Ray's warm start, with nested parameters ({"w": {"five": …}}) flattened to
            the "w/five" names Ray's OptunaSearch gives its distributions."""
            flat = flatten_params(parameters)
            super().add_evaluated_point(flat, value, error=error, pruned=pruned, intermediate_values=intermediate_values)
            self._proposed[params_key(parameters)] = f"warm-{len(self._proposed)}"
            if not (error or pruned):
                self._values[params_key(parameters)] = float(value)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            import optuna

            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return
            key = next((k for k, t in self._proposed.items() if t == trial_id), None)
            if trial_outcome(result, self._max_epochs, error, self.metric) == PRUNED:
                self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
                self._completed_trials.add(trial_id)
                return
            if result and not error and key is not None and self.metric in result:
                self._values[key] = float(result[self.metric])
            super().on_trial_complete(trial_id, result, error)

    return FidelityAwareOptunaSearch
