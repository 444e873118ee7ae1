import pytest
from conftest import REPO

from raysynth.config import ConfigError, apply_overrides
from raysynth.validate import load_config

SPACE = REPO / "search_spaces" / "digits.yaml"


def test_default_space_loads_and_poisons_two_classes():
    config = load_config(SPACE)
    assert config.dataset == "digits"
    assert sorted(v for v in config.pool.quality.values()) == ["counter", "counter"]
    assert "class_weights" in config.search.space


def test_set_overrides_are_typed():
    config = load_config(SPACE, ["train.epochs=3", "train.lr=1e-3", "search.final_eval=false"])
    assert config.train.epochs == 3 and config.train.lr == pytest.approx(1e-3)
    assert config.search.final_eval is False


@pytest.mark.parametrize(
    "override, field",
    [
        ("train.nope=1", "train.nope"),
        ("nope=1", "nope"),
        ("train.epochs=many", "train.epochs"),
        ("pool.strength=1.5", "pool.strength"),
        ("search.algorithm=grid", "search.algorithm"),
        ("pool.quality.five=bogus", "pool.quality.five"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError) as exc:
        load_config(SPACE, [override])
    message = str(exc.value)
    assert field in message and "\n" not in message


def test_malformed_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+"):
        load_config(bad)


def test_space_errors_name_the_dimension(tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("search:\n  space:\n    train.lr: {type: loguniform, low: 0, high: 1}\n")
    with pytest.raises(ConfigError, match=r"search.space.train.lr.low"):
        load_config(space)
    space.write_text("search:\n  space:\n    train.bogus: {type: uniform, low: 0, high: 1}\n")
    with pytest.raises(ConfigError, match=r"unknown config field 'train.bogus'"):
        load_config(space)


def test_overrides_do_not_mutate_input():
    raw = {"train": {"epochs": 2}}
    out = apply_overrides(raw, ["train.epochs=5"])
    assert raw["train"]["epochs"] == 2 and out["train"]["epochs"] == 5
