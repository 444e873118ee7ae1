"""``grouped``: one weight per group of classes (``w_group/g<i>``); the groups are
quantiles of the measured fidelity (``by: quality``) or k-means of the class-mean
features (``by: features``), both measured before the search."""

from __future__ import annotations

from raysynth.config import ConfigError
from raysynth.context import QualityRequest
from raysynth.search.weightings.base import Weighting, register_weighting, unit_range

GROUP_BY = ("quality", "features")


@register_weighting
class Grouped(Weighting):
    name = "grouped"
    param_key = "w_group"
    keys = frozenset({"low", "high", "groups", "by"})

    def __init__(self, spec, where):
        super().__init__(spec, where)
        self.low, self.high = unit_range(spec, where)
        groups = spec.get("groups")
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            raise ConfigError(f"{where}.groups: expected an integer >= 1, got {groups!r}")
        by = spec.get("by", "quality")
        if by not in GROUP_BY:
            raise ConfigError(f"{where}.by: expected one of {', '.join(GROUP_BY)}, got '{by}'")
        self.groups, self.by = groups, by

    def to_tune(self, classes):
        from ray import tune

        return {f"g{i}": tune.uniform(self.low, self.high) for i in range(self.groups)}

    def weights(self, params, classes, context):
        if context is None:
            raise ValueError("class_weights of type grouped need the measured WeightContext")
        g = params[self.param_key]
        return [float(g[f"g{group}"]) for group in context.groups]

    def quality_request(self):
        return QualityRequest(groups=self.groups, by=self.by)
