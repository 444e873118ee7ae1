"""``per_class``: one weight per class (UniCon's parameterisation; sensible up to ~20 classes)."""

from __future__ import annotations

from raysynth.search.weightings.base import Weighting, register_weighting, unit_range


@register_weighting
class PerClass(Weighting):
    name = "per_class"
    param_key = "w"
    keys = frozenset({"low", "high"})

    def __init__(self, spec, where):
        super().__init__(spec, where)
        self.low, self.high = unit_range(spec, where)

    def to_tune(self, classes):
        from ray import tune

        return {c: tune.uniform(self.low, self.high) for c in classes}

    def weights(self, params, classes, context):
        w = params.get(self.param_key)
        if w is None:
            return None
        missing = [c for c in classes if c not in w]
        if missing:
            raise KeyError(f"trial params have no weight for classes {missing}")
        return [float(w[c]) for c in classes]
