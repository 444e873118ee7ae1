"""Every registered searcher on a cheap objective (through its own contract, or Tune); the fidelity and
duplicate traps; the scikit-optimize searcher's save/restore."""

import json
import sys

import optuna
import pytest
import ray.cloudpickle
from ray import tune
from ray.tune.search import Searcher

from raysynth.search.searchers import SEARCHERS, SearcherSpec, build_searcher
from raysynth.search.searchers.skopt_gp import SkoptSearch

SPACE = {"x": tune.uniform(0.0, 1.0), "y": tune.loguniform(1e-3, 1.0), "k": tune.choice(["a", "b", "c"]), "fixed": 3}


def _value(config) -> float:
    # best at x = 0.3, y = 0.1, k = "b"
    import math

    return -((config["x"] - 0.3) ** 2) - (math.log10(config["y"]) + 1) ** 2 / 4 - (0.0 if config["k"] == "b" else 0.5)


def _objective(config):
    import time

    start = time.time()
    time.sleep(0.3)  # long enough that two trials at once would overlap
    # one "epoch": no trial counts as pruned
    tune.report({"score": _value(config), "epoch": 1, "start": start, "end": time.time()})


def _run_directly(searcher, trials: int) -> list[float]:
    """The searcher's own contract (suggest, then on_trial_complete), one trial at a time."""
    searcher.set_search_properties("score", "max", SPACE)
    scores = []
    for i in range(trials):
        config = searcher.suggest(f"t{i}")
        value = _value({**config, "fixed": 3})
        searcher.on_trial_complete(f"t{i}", {"score": value, "epoch": 1, "training_iteration": 1})
        scores.append(value)
    return scores


def _run_in_tune(searcher, trials: int, tmp_path, name: str) -> list[float]:
    """Through Tune with 2 CPUs free; the searcher alone limits trials to one at a time
    (random is not a Searcher, so Tune's max_concurrent_trials would not reach it)."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests
    tuner = tune.Tuner(
        tune.with_resources(_objective, {"cpu": 0.5}),
        param_space=SPACE,
        tune_config=tune.TuneConfig(metric="score", mode="max", search_alg=searcher, num_samples=trials),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name=name, verbose=0),
    )
    results = tuner.fit()
    assert not results.errors and all(r.config["fixed"] == 3 for r in results)
    assert len({json.dumps(r.config, sort_keys=True) for r in results}) == trials  # no duplicate point
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in results)
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), f"trials overlapped: {spans}"
    return [r.metrics["score"] for r in results]  # in the order the trials were created


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_each_searcher_improves_on_its_first_points(name, request, tmp_path):
    """One trial at a time (a deterministic order); a model-based searcher's last trials
    are better on average than its random initial points — it has learned where the
    good region is. Searchers that implement Ray's Searcher contract are driven through
    it directly (Tune adds nothing here); the others (random) run through Tune."""
    initial, trials = 4, 14
    searcher = build_searcher(name, SearcherSpec("score", "max", seed=0, max_epochs=1, initial_points=initial, concurrency=1))
    if isinstance(searcher, Searcher):
        scores = _run_directly(searcher, trials)
    else:
        request.getfixturevalue("ray_session")
        trials = 6  # random sampling has nothing to learn: a few trials show it runs the space
        scores = _run_in_tune(searcher, trials, tmp_path, name)
    assert len(scores) == trials
    if name != "random":
        first, last = sum(scores[:initial]) / initial, sum(scores[-4:]) / 4
        assert last > first, f"{name}: last trials {scores[-4:]} no better than the initial {scores[:initial]}"


def _tune_space():
    return {"x": tune.uniform(0.0, 1.0), "n": tune.randint(1, 5), "w": {"a": tune.uniform(0, 1)}, "c": 7}


def test_skopt_save_restore_continues_its_model_without_repeating_points(tmp_path):
    first = SkoptSearch(metric="score", mode="max", seed=1, max_epochs=3, initial_points=3)
    first.set_search_properties("score", "max", _tune_space())
    seen = []
    for i in range(6):
        config = first.suggest(f"t{i}")
        assert config["c"] == 7 and 1 <= config["n"] <= 4 and set(config["w"]) == {"a"}
        seen.append(json.dumps(config, sort_keys=True))
        first.on_trial_complete(f"t{i}", {"score": -abs(config["x"] - 0.5), "epoch": 3})
    pending = first.suggest("running")  # a trial still running when the driver died
    first.save(str(tmp_path / "searcher.json"))

    restored = SkoptSearch()
    restored.restore(str(tmp_path / "searcher.json"))
    assert len(restored._optimizer.yi) == 6  # the GP is refitted on every told point
    assert restored._live == {"running": first._live["running"]}
    for i in range(6, 12):
        config = restored.suggest(f"t{i}")
        key = json.dumps(config, sort_keys=True)
        assert key not in seen and key != json.dumps(pending, sort_keys=True)
        seen.append(key)
        restored.on_trial_complete(f"t{i}", {"score": -abs(config["x"] - 0.5), "epoch": 3})
    assert len(restored._optimizer.yi) == 12


def test_skopt_learns_only_from_full_fidelity_trials():
    s = SkoptSearch(metric="score", mode="max", seed=0, max_epochs=6, initial_points=2)
    s.set_search_properties("score", "max", _tune_space())
    s.suggest("a"), s.suggest("b")
    s.on_trial_complete("a", {"score": 0.9, "epoch": 2})  # stopped by ASHA at epoch 2
    s.on_trial_complete("b", {"score": 0.5, "epoch": 6})
    assert s._optimizer.yi == [-0.5]


def test_optuna_search_tells_asha_stopped_trials_as_pruned():
    searcher = build_searcher("optuna-gp", SearcherSpec("score", "max", seed=0, max_epochs=6, initial_points=2))
    searcher.set_search_properties("score", "max", {"x": tune.uniform(0, 1)})
    searcher.suggest("a"), searcher.suggest("b")
    searcher.on_trial_complete("a", {"score": 0.9, "epoch": 2, "training_iteration": 2})
    searcher.on_trial_complete("b", {"score": 0.5, "epoch": 6, "training_iteration": 6})
    states = [t.state for t in searcher._ot_study.get_trials()]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]


class _StuckSampler(optuna.samplers.RandomSampler):
    """Proposes the same point forever (what GPSampler can do under concurrency)."""

    def sample_independent(self, study, trial, name, distribution):
        return 0.25


def test_optuna_search_never_runs_a_duplicate():
    from raysynth.search.searchers.optuna_base import fidelity_aware_optuna_search

    searcher = fidelity_aware_optuna_search()(metric="score", mode="max", sampler=_StuckSampler(seed=0), max_epochs=1, seed=0)
    searcher.set_search_properties("score", "max", {"x": tune.uniform(0, 1)})
    a = searcher.suggest("a")
    b = searcher.suggest("b")  # the sampler insists on 0.25 while "a" runs
    assert a == {"x": 0.25} and b["x"] != 0.25
    searcher.on_trial_complete("a", {"score": 1.0, "epoch": 1, "training_iteration": 1})
    c = searcher.suggest("c")
    assert c["x"] not in (0.25, b["x"])



# -- Ray's searcher contract (cases like Ray Tune's own searcher suite), for every
#    registered searcher that is a Searcher (random is Tune's BasicVariantGenerator)
MODEL_BASED = [n for n in sorted(SEARCHERS) if n != "random"]
CONSTANTS = {"list": [1, 2, 3], "nested": {"tuple_like": [0.5, "a"], "none": None}, "flag": True, "name": "digits"}


def _contract_searcher(name, initial=2):
    searcher = build_searcher(name, SearcherSpec("score", "max", seed=0, max_epochs=1, initial_points=initial))
    searcher.set_search_properties("score", "max", {**SPACE, **CONSTANTS})
    return searcher


@pytest.mark.parametrize("name", MODEL_BASED)
def test_constants_of_every_type_come_back_unchanged(name):
    """Tune merges a suggestion over the param space (SearchGenerator): a searcher may
    leave constants out, but one it returns must keep its type (skopt-gp once turned a
    list into a {"0": …} dict, which the merge then wrote over the list)."""
    from ray.tune.utils.util import merge_dicts

    searcher = _contract_searcher(name)
    for i in range(4):
        config = merge_dicts({**CONSTANTS, "fixed": 3}, searcher.suggest(f"t{i}"))
        assert {k: config[k] for k in CONSTANTS} == CONSTANTS and config["fixed"] == 3
        searcher.on_trial_complete(f"t{i}", {"score": _value(config), "epoch": 1, "training_iteration": 1})


@pytest.mark.parametrize("name", MODEL_BASED)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_results_do_not_break_a_searcher(name, bad):
    searcher = _contract_searcher(name)
    for i in range(5):
        config = searcher.suggest(f"t{i}")
        value = bad if i in (1, 3) else _value(config)
        searcher.on_trial_complete(f"t{i}", {"score": value, "epoch": 1, "training_iteration": 1})
    assert set(searcher.suggest("next")) >= {"x", "y", "k"}


@pytest.mark.parametrize("name", MODEL_BASED)
def test_add_evaluated_point_warm_starts_a_searcher(name):
    """Points evaluated elsewhere (an earlier search) reach the model: Optuna's study
    holds them as trials; the GP holds them as observations and does not propose them."""
    searcher = _contract_searcher(name)
    earlier = [{"x": 0.3, "y": 0.1, "k": "b"}, {"x": 0.9, "y": 0.5, "k": "a"}]  # the searched parameters
    for params in earlier:
        searcher.add_evaluated_point(params, _value({**params, "fixed": 3}))
    if isinstance(searcher, SkoptSearch):
        assert len(searcher._told) == 2
    else:
        assert len(searcher._ot_study.trials) == 2
    config = searcher.suggest("t0")
    assert (config["x"], config["y"], config["k"]) not in [(p["x"], p["y"], p["k"]) for p in earlier]


def test_skopt_constant_liar_tells_the_model_about_running_trials():
    """Once the GP models (after its initial points), a suggestion made while trials run
    comes from a copy of the model told those trials' points with the best value so far."""
    searcher = _contract_searcher("skopt-gp", initial=2)
    for i in range(3):
        config = searcher.suggest(f"done{i}")
        searcher.on_trial_complete(f"done{i}", {"score": _value(config), "epoch": 1, "training_iteration": 1})
    running = [searcher.suggest("r0"), searcher.suggest("r1")]
    copies = []
    original_copy = searcher._optimizer.copy

    def spy(random_state=None):
        copies.append(original_copy(random_state=random_state))
        return copies[-1]

    searcher._optimizer.copy = spy
    searcher.suggest("r2")
    assert copies, "no copy of the model was told the running trials"
    told = [list(x) for x in copies[0].Xi]
    for r in running:
        assert [r["x"], r["y"], r["k"]] in told
    assert copies[0].yi[-1] == min(y for _, y in searcher._told)


def test_skopt_save_restore_keeps_a_trial_that_never_completes(tmp_path):
    searcher = _contract_searcher("skopt-gp")
    done = searcher.suggest("done")
    searcher.on_trial_complete("done", {"score": _value(done), "epoch": 1, "training_iteration": 1})
    stuck = searcher.suggest("stuck")  # never completes before the save
    searcher.save(str(tmp_path / "s.json"))
    restored = SkoptSearch()
    restored.restore(str(tmp_path / "s.json"))
    fresh = restored.suggest("after")
    assert fresh != stuck and {k: fresh[k] for k in CONSTANTS} == CONSTANTS
    restored.on_trial_complete("stuck", {"score": _value(stuck), "epoch": 1, "training_iteration": 1})  # Tune re-ran it
    assert len(restored._told) == 2
