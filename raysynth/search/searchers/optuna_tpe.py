"""``optuna-tpe``: Optuna's multivariate TPE (the default searcher)."""

from __future__ import annotations

from raysynth.search.searchers.base import SearcherSpec, register_searcher
from raysynth.search.searchers.optuna_base import fidelity_aware_optuna_search, study_kwargs


@register_searcher("optuna-tpe")
def optuna_tpe(o: SearcherSpec):
    import optuna

    # multivariate TPE models the weights jointly: the poisoned classes interact
    sampler = optuna.samplers.TPESampler(seed=o.seed, multivariate=True, n_startup_trials=o.initial_points)
    return fidelity_aware_optuna_search()(
        metric=o.metric, mode=o.mode, sampler=sampler, max_epochs=o.max_epochs, seed=o.seed, **study_kwargs(o)
    )
