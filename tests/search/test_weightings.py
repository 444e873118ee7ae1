"""Per-class weight parameterisations (per_class, grouped, quality), ties, and the
fidelity scores measured before a search."""

import math

import pytest
import torch
from conftest import REPO

from raysynth.config import ConfigError
from raysynth.context import WeightContext
from raysynth.prepare.quality import class_discrepancy, fidelity_scores, quality_groups
from raysynth.search.space import apply_params, parse_space
from raysynth.search.weightings.quality import quality_weights
from raysynth.validate import load_config

CLASSES = ["five", "six", "seven", "eight", "nine"]


def _config(*space):
    return load_config(REPO / "search_spaces" / "digits.yaml", ["search.space={}", *space])


def test_quality_weights_are_monotone_in_fidelity_when_b_is_positive():
    q = [-1.5, -0.2, 0.0, 0.7, 2.0]
    for a, b in ((0.0, 0.5), (-2.0, 3.0), (1.0, 0.01)):
        w = quality_weights(a, b, q)
        assert all(x < y for x, y in zip(w, w[1:])) and all(0 < x < 1 for x in w)
    assert quality_weights(0.0, -1.0, q)[0] > quality_weights(0.0, -1.0, q)[-1]
    assert quality_weights(0.0, 0.0, q) == [0.5] * 5


def test_quality_parameterisation_searches_two_numbers_for_any_class_count():
    config = _config("search.space.class_weights={type: quality, a: [-2, 2], b: [0, 5]}")
    space = parse_space(config.search.space, config)
    assert set(space.to_tune(CLASSES)) == {"w_quality"} and set(space.to_tune(CLASSES * 40)["w_quality"]) == {"a", "b"}
    context = WeightContext(quality=[-1.0, -0.5, 0.0, 0.5, 1.0])
    _, w = apply_params(config, {"w_quality": {"a": 0.5, "b": 2.0}}, CLASSES, context)
    assert w == pytest.approx([1 / (1 + math.exp(-(0.5 + 2.0 * q))) for q in context.quality])


def test_grouped_weights_map_each_class_to_its_groups_weight():
    config = _config("search.space.class_weights={type: grouped, groups: 2, by: quality, low: 0, high: 1}")
    space = parse_space(config.search.space, config)
    assert set(space.to_tune(CLASSES)["w_group"]) == {"g0", "g1"}
    groups = quality_groups([2.0, -1.0, 0.5, -3.0, 1.0], 2)
    assert groups == [1, 0, 0, 0, 1]  # quantiles of q: the three least faithful, then the two most
    _, w = apply_params(config, {"w_group": {"g0": 0.1, "g1": 0.9}}, CLASSES, WeightContext(groups=groups))
    assert w == [0.9 if g else 0.1 for g in groups]


def test_fidelity_scores_rank_classes_by_discrepancy_of_features():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(20, 8, generator=g)
    labels = torch.arange(20) % 2
    # class 0's synthetic features are its real ones plus noise; class 1's are unrelated
    syn = torch.cat([real[labels == 0] + 0.05 * torch.randn(10, 8, generator=g), torch.randn(10, 8, generator=g)])
    syn_class = torch.tensor([0] * 10 + [1] * 10)
    d = class_discrepancy(real, labels, syn, syn_class, 2)
    assert d[0] < d[1]
    q = fidelity_scores(d)
    assert q[0] > 0 > q[1] and sum(q) == pytest.approx(0.0, abs=1e-9)


def test_tie_keeps_lambda2_at_ten_lambda1():
    config = _config(
        "loss={bound: {}}",
        "search.space.loss.bound.lam1={type: loguniform, low: 0.1, high: 50}",
        "search.space.loss.bound.lam2={type: tie, to: loss.bound.lam1, factor: 10}",
    )
    space = parse_space(config.search.space, config)
    assert set(space.to_tune(CLASSES)) == {"loss.bound.lam1"}  # the tie is derived, not searched
    trial, _ = apply_params(config, {"loss.bound.lam1": 2.0}, CLASSES)
    assert trial.loss["bound"]["lam1"] == 2.0 and trial.loss["bound"]["lam2"] == 20.0


@pytest.mark.parametrize(
    "entry, message",
    [
        ("class_weights={type: grouped, low: 0, high: 1}", "class_weights.groups: expected an integer >= 1"),
        ("class_weights={type: grouped, groups: 3, by: color, low: 0, high: 1}", "class_weights.by: expected one of quality, features"),
        ("class_weights={type: quality, a: [2, 1]}", "class_weights.a: need low < high"),
        ("class_weights={type: quality, groups: 2}", "unknown key 'groups' for type quality"),
        ("class_weights={type: spline, low: 0, high: 1}", "class_weights.type: expected one of grouped, per_class, quality"),
        ("train.lr={type: tie, to: train.nope, factor: 2}", "unknown config field 'train.nope'"),
        ("train.lr={type: tie, to: train.weight_decay}", "train.lr: missing 'factor'"),
    ],
)
def test_weight_and_tie_mistakes_name_the_field(entry, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(").replace("[", r"\[")):
        _config(f"search.space.{entry}")


class _Trial:
    """What a finished Ray Tune trial gives weight_effects: its config and last metrics."""

    def __init__(self, weights, val_acc, epochs=2):
        self.config, self.metrics, self.error = {"w": dict(zip(CLASSES, weights))}, {"val_acc": val_acc, "epoch": epochs}, None


def test_the_summary_says_which_weights_the_search_identified():
    """Validation accuracy that rises with five's weight and falls with eight's, and does not
    depend on the other three: five and eight are identified (with the right signs), the
    rest are 'not identified', in the summary and the parent run's metrics."""
    from raysynth.search.results import SearchSummary, format_summary, weight_effects

    config = _config("search.space.class_weights={type: per_class, low: 0.0, high: 1.0}")
    space = parse_space(config.search.space, config)
    g = torch.Generator().manual_seed(0)
    w = torch.rand(32, 5, generator=g)
    acc = 0.8 + 0.06 * w[:, 0] - 0.08 * w[:, 3] + 0.01 * torch.randn(32, generator=g)
    trials = [_Trial(row.tolist(), float(a)) for row, a in zip(w, acc)]
    trials.append(_Trial([1.0] * 5, 0.99, epochs=1))  # stopped early (ASHA): not counted
    effects = weight_effects(trials, 2, CLASSES, space)
    assert effects["five"].identified and effects["five"].effect == pytest.approx(0.06, abs=0.02)
    assert effects["eight"].identified and effects["eight"].effect == pytest.approx(-0.08, abs=0.02)
    assert not any(effects[c].identified for c in ("six", "seven", "nine"))
    summary = SearchSummary("run", {"w": dict(zip(CLASSES, [1.0, 0.5, 0.5, 0.0, 0.5]))}, 0.9, CLASSES, {}, trials=32)
    summary.best_weights, summary.effects = [1.0, 0.5, 0.5, 0.0, 0.5], effects
    text = format_summary(summary)
    assert sum("not identified" in line for line in text.splitlines()) == 3
    eight = next(line for line in text.splitlines() if line.strip().startswith("eight"))
    assert f"effect {effects['eight'].effect:+.3f}" in eight and eight.endswith("identified  (faithful)") and "not" not in eight
    metrics = summary.metrics()
    assert metrics["weight_identified/five"] == 1.0 and metrics["weight_identified/six"] == 0.0
    assert metrics["weight_effect/eight"] < 0
    assert weight_effects(trials[:6], 2, CLASSES, space) == {}  # fewer trials than classes + 3: too few to say
