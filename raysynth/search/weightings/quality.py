"""``quality``: w_c = sigmoid(a + b·q_c), with ``a`` and ``b`` searched (``w_quality/a``,
``w_quality/b``) and q_c each class's fidelity, measured before the search (b > 0: the
weight grows with fidelity). Two dimensions, whatever the class count."""

from __future__ import annotations

import math

from raysynth.config import ConfigError
from raysynth.context import QualityRequest
from raysynth.search.weightings.base import Weighting, number, register_weighting

DEFAULT_RANGES = {"a": (-4.0, 4.0), "b": (0.0, 4.0)}  # intercept; slope (trust follows fidelity)


def quality_weights(a: float, b: float, quality: list[float]) -> list[float]:
    return [1.0 / (1.0 + math.exp(-(a + b * q))) for q in quality]


@register_weighting
class Quality(Weighting):
    name = "quality"
    param_key = "w_quality"
    keys = frozenset({"a", "b"})

    def __init__(self, spec, where):
        super().__init__(spec, where)
        self.ranges = {}
        for key, default in DEFAULT_RANGES.items():
            value = spec.get(key, list(default))
            if not (isinstance(value, list) and len(value) == 2):
                raise ConfigError(f"{where}.{key}: expected [low, high], got {value!r}")
            lo, hi = (number({"v": v}, "v", f"{where}.{key}") for v in value)
            if not lo < hi:
                raise ConfigError(f"{where}.{key}: need low < high, got {value!r}")
            self.ranges[key] = (lo, hi)

    def to_tune(self, classes):
        from ray import tune

        return {key: tune.uniform(*bounds) for key, bounds in self.ranges.items()}

    def weights(self, params, classes, context):
        if context is None:
            raise ValueError("class_weights of type quality need the measured WeightContext")
        q = params[self.param_key]
        return quality_weights(float(q["a"]), float(q["b"]), context.quality)

    def quality_request(self):
        return QualityRequest()
