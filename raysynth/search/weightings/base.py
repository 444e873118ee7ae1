"""Per-class weights of the synthetic data: the registry of parameterisations.

UniCon searches one weight per class; at 200 classes that is a 200-dimension search, so
other parameterisations trade resolution for dimensions. Each is one file in this folder
registering a :class:`Weighting`:

* ``class_weights: {type: <name>, ...}`` in ``search.space`` is parsed by its class
  (``__init__`` checks the spec; one-line ConfigErrors naming the key);
* :meth:`Weighting.to_tune` gives the searched dimensions, which a trial's config holds
  under ``param_key`` (``w/<class>`` once flattened, as in MLflow);
* :meth:`Weighting.weights` turns a trial's values into one weight per class, using the
  per-class quality measured before the search (:mod:`raysynth.prepare.quality`) where needed.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from raysynth.config import ConfigError
from raysynth.context import QualityRequest, WeightContext
from raysynth.registry import Registry

WEIGHTINGS: Registry[type["Weighting"]] = Registry("class_weights type")
WEIGHTS_KEY = "class_weights"  # the search.space key of the per-class weights


def register_weighting(cls: type["Weighting"]) -> type["Weighting"]:
    return WEIGHTINGS.add(cls.name, cls)


def number(spec: dict, key: str, where: str) -> float:
    if key not in spec:
        raise ConfigError(f"{where}: missing '{key}'")
    try:
        value = float(spec[key])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{key}: expected a number, got {spec[key]!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where}.{key}: must be a finite number, got {spec[key]}")
    return value


def unit_range(spec: dict, where: str) -> tuple[float, float]:
    """``low``/``high`` of weights: 0 <= low < high."""
    low, high = number(spec, "low", where), number(spec, "high", where)
    if not 0.0 <= low < high:
        raise ConfigError(f"{where}: need 0 <= low < high, got low={low}, high={high}")
    return low, high


class Weighting:
    """Base class of a per-class weight parameterisation."""

    name: ClassVar[str]
    param_key: ClassVar[str]  # where a trial's params hold this weighting's values
    keys: ClassVar[frozenset[str]] = frozenset()  # spec keys besides 'type'

    def __init__(self, spec: dict[str, Any], where: str):
        extra = set(spec) - set(self.keys) - {"type"}
        if extra:
            raise ConfigError(
                f"{where}: unknown key '{sorted(extra)[0]}' for type {self.name} (allowed: {', '.join(sorted(self.keys))})"
            )

    def to_tune(self, classes: list[str]) -> dict[str, Any]:
        """The Ray Tune dimensions of this weighting (held under ``param_key``)."""
        raise NotImplementedError

    def weights(self, params: dict[str, Any], classes: list[str], context: WeightContext | None) -> list[float] | None:
        """A trial's per-class weights in ``classes`` order (None: the trial has none)."""
        raise NotImplementedError

    def quality_request(self) -> QualityRequest | None:
        """What must be measured before the search (None: nothing)."""
        return None


def parse_weighting(spec: dict[str, Any], where: str) -> Weighting:
    kind = spec["type"]
    if kind not in WEIGHTINGS:
        raise ConfigError(f"{where}.type: expected one of {WEIGHTINGS.known()}, got '{kind}'")
    return WEIGHTINGS[kind](spec, where)


def weight_param_keys() -> tuple[str, ...]:
    """Every key under which a trial's params hold weighting values ("w", "w_group", ...)."""
    return tuple(cls.param_key for _, cls in WEIGHTINGS.items())


def is_weight_param(flat_key: str) -> bool:
    """Whether a flattened param name (``w/five``, ``w_group/g0``) is a weighting value."""
    return flat_key.split("/", 1)[0] in weight_param_keys()
