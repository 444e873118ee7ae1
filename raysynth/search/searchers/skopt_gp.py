"""``skopt-gp``: UniCon's Bayesian optimisation (scikit-optimize's GP), as a Ray Tune
searcher (Ray no longer ships SkOptSearch). Fitted on complete trials only: pruned
points are remembered so they are not proposed again, but not modelled."""

from __future__ import annotations

import json
import math
from typing import Any

from ray.tune.search import Searcher

from raysynth.config import flatten, nest
from raysynth.outcome import FINISHED, trial_outcome
from raysynth.search.searchers.base import DUPLICATE_RETRIES, SearcherSpec, WarmStartable, register_searcher


@register_searcher("skopt-gp")
def skopt_gp(o: SearcherSpec):
    return SkoptSearch(metric=o.metric, mode=o.mode, seed=o.seed, max_epochs=o.max_epochs, initial_points=o.initial_points)



def _dimension_spec(domain) -> dict:
    """A Ray Tune domain -> a JSON description of a scikit-optimize dimension."""
    from ray.tune.search.sample import Categorical, Float, Integer, LogUniform, Quantized

    sampler = domain.get_sampler()
    if isinstance(sampler, Quantized):
        sampler = sampler.sampler
    if isinstance(domain, Float):
        prior = "log-uniform" if isinstance(sampler, LogUniform) else "uniform"
        return {"kind": "real", "low": domain.lower, "high": domain.upper, "prior": prior}
    if isinstance(domain, Integer):
        return {"kind": "integer", "low": domain.lower, "high": domain.upper - 1}  # randint excludes upper
    if isinstance(domain, Categorical):
        return {"kind": "categorical", "categories": list(domain.categories)}
    raise ValueError(f"skopt-gp cannot search a {type(domain).__name__} dimension")


def _dimension(spec: dict):
    from skopt.space import Categorical, Integer, Real

    if spec["kind"] == "real":
        return Real(spec["low"], spec["high"], prior=spec["prior"])
    if spec["kind"] == "integer":
        return Integer(spec["low"], spec["high"])
    return Categorical(spec["categories"])


def _plain(value):
    """numpy scalars -> Python (JSON, Ray configs)."""
    return value.item() if hasattr(value, "item") else value


class SkoptSearch(WarmStartable, Searcher):
    """UniCon's Bayesian optimisation as a Ray Tune searcher over ``skopt.Optimizer``.

    GP base estimator, ``acq_func="gp_hedge"``, ``acq_optimizer="lbfgs"`` (``"sampling"``
    when a dimension is categorical), the first
    ``initial_points`` points random (UniCon: 100 calls, 20 initial). Maximising modes
    are negated (skopt minimises). Concurrent suggestions use the constant liar: the
    trials still running are told the best value so far on a copy of the model, which
    then proposes elsewhere. Constants of the space come back with their types (lists stay
    lists). ``add_evaluated_point`` tells points evaluated elsewhere (warm start). ``save``/``restore`` write JSON (every
    told point and every proposal): a restored searcher refits the same GP and never
    repeats a point.
    """

    def __init__(self, metric: str | None = None, mode: str | None = None, seed: int = 0, max_epochs: int = 1, initial_points: int = 10):
        super().__init__(metric=metric, mode=mode)
        self._seed = seed
        self._max_epochs = max_epochs
        self._initial_points = initial_points
        self._names: list[tuple] = []  # flattened paths of the searched dimensions
        self._specs: list[dict] = []
        self._constants: dict[tuple, Any] = {}
        self._optimizer = None
        self._live: dict[str, list] = {}  # trial id -> point
        self._told: list[tuple[list, float]] = []
        self._proposed: list[list] = []
        self._restarts = 0

    # -- Ray Tune plumbing
    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if self._optimizer is not None:
            return False
        from ray.tune.search.variant_generator import parse_spec_vars

        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        resolved, domains, grid = parse_spec_vars(config)
        if grid:
            raise ValueError("skopt-gp cannot search a grid_search dimension")
        self._constants = {tuple(path): value for path, value in resolved}
        self._names = [tuple(path) for path, _ in domains]
        self._specs = [_dimension_spec(d) for _, d in domains]
        self._new_optimizer()
        self._tell_warm_points()
        return True

    def _new_optimizer(self) -> None:
        from skopt import Optimizer

        self._optimizer = Optimizer(
            [_dimension(spec) for spec in self._specs],
            base_estimator="GP",
            n_initial_points=self._initial_points,
            acq_func="gp_hedge",
            # UniCon's L-BFGS over the (continuous) weights; with a categorical dimension
            # L-BFGS works on the one-hot relaxation and stalls, so sample the acquisition
            acq_optimizer="sampling" if any(spec["kind"] == "categorical" for spec in self._specs) else "lbfgs",
            random_state=self._seed + 7919 * self._restarts,
        )
        if self._told:
            xs, ys = zip(*self._told)
            self._optimizer.tell([list(x) for x in xs], list(ys))

    def _config(self, point: list) -> dict:
        return nest([*self._constants.items(), *zip(self._names, (_plain(v) for v in point))])

    def suggest(self, trial_id: str):
        if self._optimizer is None:
            raise RuntimeError("skopt-gp: no search space (set_search_properties was not called)")
        seen = {json.dumps([_plain(v) for v in p]) for p in self._proposed}
        optimizer = self._optimizer
        if self._told and self._live:
            # constant liar (cl_min): the trials still running are told the best value so
            # far on a copy of the model, so it proposes elsewhere
            lie = min(y for _, y in self._told)
            optimizer = self._optimizer.copy(random_state=self._seed + 7919 * self._restarts + len(self._proposed))
            optimizer.tell([list(p) for p in self._live.values()], [lie] * len(self._live))
        point = None
        for _ in range(DUPLICATE_RETRIES):
            candidate = [_plain(v) for v in optimizer.ask()]
            if json.dumps(candidate) not in seen:
                point = candidate
                break
            if optimizer is self._optimizer:  # a duplicate: lie about it on a copy and ask again
                optimizer = self._optimizer.copy(random_state=self._seed + 7919 * self._restarts + len(self._proposed))
            optimizer.tell(candidate, min((y for _, y in self._told), default=0.0))
        if point is None:
            point = [_plain(v) for v in self._optimizer.space.rvs(random_state=self._seed + len(self._proposed))[0]]
        self._live[trial_id] = point
        self._proposed.append(point)
        return self._config(point)

    def add_evaluated_point(self, parameters: dict, value: float, error: bool = False, pruned: bool = False,
                            intermediate_values=None) -> None:
        """Ray's warm start: a point evaluated elsewhere (an earlier search) is told to the
        GP (an error or a pruned trial is only remembered, so it is not proposed again)."""
        if self._optimizer is None:
            raise RuntimeError("skopt-gp: no search space (set_search_properties was not called)")
        flat = flatten(parameters, lists=True)
        missing = [n for n in self._names if n not in flat]
        if missing:
            raise ValueError(f"skopt-gp: the evaluated point lacks {'/'.join(map(str, missing[0]))}")
        point = [_plain(flat[n]) for n in self._names]
        if point not in self._optimizer.space:
            raise ValueError(f"skopt-gp: the evaluated point {point} lies outside the search space")
        self._proposed.append(point)
        value = float(value)
        if error or pruned or not math.isfinite(value):
            return
        y = -value if self.mode == "max" else value
        self._told.append((point, y))
        self._optimizer.tell(point, y)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        point = self._live.pop(trial_id, None)
        if point is None or trial_outcome(result, self._max_epochs, error, self.metric) != FINISHED:
            return  # failed, or pruned (partial fidelity: not comparable with complete trials)
        value = float(result[self.metric])
        if not math.isfinite(value):
            return
        y = -value if self.mode == "max" else value
        self._told.append((point, y))
        self._optimizer.tell(point, y)

    # -- state
    def save(self, checkpoint_path: str) -> None:
        state = {
            "seed": self._seed,
            "max_epochs": self._max_epochs,
            "initial_points": self._initial_points,
            "metric": self._metric,
            "mode": self._mode,
            "names": [list(n) for n in self._names],
            "constants": [[list(k), v] for k, v in self._constants.items()],
            "dims": self._specs,
            "told": self._told,
            "proposed": self._proposed,
            "live": self._live,
            "restarts": self._restarts,
        }
        with open(checkpoint_path, "w") as f:
            json.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            state = json.load(f)
        self._seed, self._max_epochs = state["seed"], state["max_epochs"]
        self._initial_points = state["initial_points"]
        self._metric, self._mode = state["metric"], state["mode"]
        self._names = [tuple(n) for n in state["names"]]
        self._constants = {tuple(k): v for k, v in state["constants"]}
        self._specs = state["dims"]
        self._told = [(list(x), float(y)) for x, y in state["told"]]
        self._proposed = [list(p) for p in state["proposed"]]
        # trials that were running when the search stopped are re-run by Tune: keep them pending
        self._live = {k: list(v) for k, v in state["live"].items()}
        # a fresh random stream: the restored optimizer must not replay the initial points
        self._restarts = state["restarts"] + 1
        self._new_optimizer()
