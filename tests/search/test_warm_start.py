"""Warm start: finished trials of an earlier search (real MLflow runs in a sqlite store)
are read back for a compatible space and told to the searcher once Tune gives it its
space; other spaces' and unfinished trials are skipped and counted."""

import pytest
from mlflow.tracking import MlflowClient
from ray import tune

from raysynth.config import ConfigError
from raysynth.search.searchers import SearcherSpec, build_searcher
from raysynth.search.warm_start import earlier_trials
from raysynth.tracking.mlflow_runs import KIND_TAG, PARENT_TAG, STATUS_TAG

SPACE = {"train.lr": tune.loguniform(1e-3, 3e-3), "w": {"five": tune.uniform(0.0, 1.0), "six": tune.uniform(0.0, 1.0)}}


@pytest.fixture
def earlier_search(tmp_path):
    """An earlier search's parent run and five trial runs, logged as raysynth logs them."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("earlier")
    parent = client.create_run(exp, tags={KIND_TAG: "search"}).info.run_id
    trials = [
        ("finished", {"train.lr": 2e-3, "w/five": 0.1, "w/six": 0.9}, 0.91),
        ("finished", {"train.lr": 1.5e-3, "w/five": 0.7, "w/six": 0.2}, 0.85),
        ("finished", {"train.lr": 9e-3, "w/five": 0.5, "w/six": 0.5}, 0.80),  # lr outside the new space
        ("finished", {"w/five": 0.5, "w/six": 0.5}, 0.82),  # another space: no lr searched
        ("pruned", {"train.lr": 2e-3, "w/five": 0.3, "w/six": 0.3}, 0.60),  # stopped by ASHA
    ]
    for status, params, val_acc in trials:
        run = client.create_run(exp, tags={KIND_TAG: "trial", STATUS_TAG: status, PARENT_TAG: parent}).info.run_id
        for key, value in params.items():
            client.log_param(run, key, value)
        client.log_metric(run, "val_acc", val_acc)
    return uri, parent


def test_compatible_finished_trials_are_read_back_and_the_rest_counted(earlier_search):
    uri, parent = earlier_search
    for source in ("earlier", parent):  # an experiment, or a search's parent run
        points, skipped = earlier_trials(uri, source, SPACE)
        assert sorted(v for _, v in points) == [0.85, 0.91] and skipped == 2
        assert {"train.lr": 2e-3, "w": {"five": 0.1, "six": 0.9}} in [p for p, _ in points]
    with pytest.raises(ConfigError, match="--warm-start: no MLflow experiment or run 'nope'"):
        earlier_trials(uri, "nope", SPACE)


@pytest.mark.parametrize("name", ["skopt-gp", "optuna-tpe"])
def test_a_warm_started_searcher_holds_the_earlier_trials_once_tune_sets_its_space(earlier_search, name):
    uri, _ = earlier_search
    points, _ = earlier_trials(uri, "earlier", SPACE)
    searcher = build_searcher(name, SearcherSpec("val_acc", "max", seed=0, max_epochs=1, initial_points=4))
    searcher.warm_start(points)
    assert searcher.set_search_properties("val_acc", "max", SPACE)  # what Tune does first
    told = searcher._told if name == "skopt-gp" else searcher._ot_study.trials
    assert len(told) == 2
    if name == "skopt-gp":
        assert sorted(-y for _, y in told) == [0.85, 0.91]
    else:
        assert sorted(t.value for t in told) == [0.85, 0.91] and {"train.lr", "w/five", "w/six"} == set(told[0].params)
