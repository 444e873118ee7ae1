import pytest
from conftest import REPO

from raysynth.config import ConfigError, flatten_params
from raysynth.search.space import apply_params, parse_space
from raysynth.validate import load_config


def test_default_space_to_tune():
    config = load_config(REPO / "search_spaces" / "digits.yaml", ["search.space.train.lr={type: loguniform, low: 1.0e-3, high: 3.0e-3}"])
    space = parse_space(config.search.space, config)
    tune_space = space.to_tune(["five", "six"])
    assert set(tune_space) == {"train.lr", "w"}
    assert set(tune_space["w"]) == {"five", "six"}


def test_apply_params_sets_fields_and_weights():
    config = load_config(REPO / "search_spaces" / "digits.yaml")
    # searchers return the weights in their own order (Optuna sorts the names)
    params = {"train.lr": 0.004, "w": {"six": 0.9, "five": 0.1, "seven": 0.5}}
    trial, weights = apply_params(config, params, ["five", "six", "seven"])
    assert trial.train.lr == 0.004 and config.train.lr != 0.004
    assert weights == [0.1, 0.9, 0.5]
    with pytest.raises(KeyError):
        apply_params(config, params, ["five", "six", "seven", "eight"])
    assert flatten_params({"w": {"five": 0.1}, "train.lr": 1}) == {"w/five": 0.1, "train.lr": 1}


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"train.lr": {"type": "gaussian", "low": 0, "high": 1}}, "search.space.train.lr.type"),
        ({"train.lr": {"type": "uniform", "low": 2, "high": 1}}, "need low < high"),
        ({"train.lr": {"type": "choice"}}, "search.space.train.lr.values"),
        ({"class_weights": {"type": "per_class", "low": 0}}, "missing 'high'"),
        ({"train": {"type": "uniform", "low": 0, "high": 1}}, "is a section"),
        ({"train.lr": 0.1}, "expected a mapping with 'type'"),
    ],
)
def test_space_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(raw)
