"""``optuna-gp``: Optuna's Gaussian-process sampler."""

from __future__ import annotations

from raysynth.search.searchers.base import SearcherSpec, register_searcher
from raysynth.search.searchers.optuna_base import fidelity_aware_optuna_search, study_kwargs


@register_searcher("optuna-gp")
def optuna_gp(o: SearcherSpec):
    import optuna

    sampler = optuna.samplers.GPSampler(seed=o.seed, n_startup_trials=o.initial_points, deterministic_objective=False)
    return fidelity_aware_optuna_search()(
        metric=o.metric, mode=o.mode, sampler=sampler, max_epochs=o.max_epochs, seed=o.seed, **study_kwargs(o)
    )
