"""Search algorithms by name. Each builder takes (metric, mode, seed) and returns a
Ray Tune searcher; adding one is adding a registered function."""

from __future__ import annotations

from typing import Any, Callable

SEARCHERS: dict[str, Callable[..., Any]] = {}


def register_searcher(name: str):
    def wrap(fn):
        if name in SEARCHERS:
            raise ValueError(f"searcher '{name}' is already registered")
        SEARCHERS[name] = fn
        return fn

    return wrap


@register_searcher("optuna-tpe")
def optuna_tpe(metric: str, mode: str, seed: int):
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    # multivariate TPE models the weights jointly: the poisoned classes interact
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8)
    return OptunaSearch(metric=metric, mode=mode, sampler=sampler)


@register_searcher("random")
def random_search(metric: str, mode: str, seed: int):
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=seed)


def build_searcher(name: str, metric: str, mode: str, seed: int):
    # concurrency is limited by TuneConfig.max_concurrent_trials (Tune wraps the searcher)
    return SEARCHERS[name](metric, mode, seed)
