"""Search spaces: YAML -> typed dimensions -> Ray Tune distributions.

``search.space`` maps a dotted config field (``loss.<objective>.<parameter>`` for an
objective's weights, e.g. ``loss.bound.lam1``) to a distribution, plus the special key
``class_weights`` for UniCon's per-class weights of the synthetic data::

    space:
      train.lr: {type: loguniform, low: 3.0e-4, high: 1.0e-2}
      train.syn_loss_weight: {type: uniform, low: 0.25, high: 2.0}
      class_weights: {type: per_class, low: 0.0, high: 1.0}

Types: uniform, loguniform, int, choice (``values``), fixed (``value``). In a trial's
config the weights live under ``w`` (``w/<class>`` once flattened, as in MLflow).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from raysynth.config import Config, ConfigError

KINDS = ("uniform", "loguniform", "int", "choice", "fixed")
WEIGHT_KINDS = ("per_class",)
WEIGHTS_KEY = "class_weights"


@dataclass(frozen=True)
class Dimension:
    name: str  # dotted config field
    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple | None = None


@dataclass(frozen=True)
class WeightSpace:
    kind: str
    low: float
    high: float


@dataclass(frozen=True)
class Space:
    dimensions: tuple[Dimension, ...]
    weights: WeightSpace | None

    def to_tune(self, classes: list[str]) -> dict[str, Any]:
        from ray import tune

        space: dict[str, Any] = {}
        for d in self.dimensions:
            if d.kind == "uniform":
                space[d.name] = tune.uniform(d.low, d.high)
            elif d.kind == "loguniform":
                space[d.name] = tune.loguniform(d.low, d.high)
            elif d.kind == "int":
                space[d.name] = tune.randint(int(d.low), int(d.high) + 1)
            elif d.kind == "choice":
                space[d.name] = tune.choice(list(d.values))
            else:
                space[d.name] = d.values[0]
        if self.weights is not None:
            space["w"] = {c: tune.uniform(self.weights.low, self.weights.high) for c in classes}
        return space


def _objective_field_type(dotted: str, config: Config | None) -> Any:
    """``loss.<objective>.<param>``: the objective must be selected in the loss section."""
    from raysynth.losses import OBJECTIVES

    parts = dotted.split(".")
    if len(parts) != 3:
        raise ConfigError(f"search.space.{dotted}: expected loss.<objective>.<parameter>")
    _, name, param = parts
    if name not in OBJECTIVES:
        raise ConfigError(f"search.space.{dotted}: unknown objective '{name}' (known: {', '.join(sorted(OBJECTIVES))})")
    if config is not None and name not in (config.loss or {"ce": {}}):
        raise ConfigError(f"search.space.{dotted}: objective '{name}' is not selected in the loss section")
    params = OBJECTIVES[name].Params
    names = {f.name for f in dataclasses.fields(params)}
    if param not in names:
        raise ConfigError(f"search.space.{dotted}: unknown parameter '{param}' of '{name}' (known: {', '.join(sorted(names))})")
    return typing.get_type_hints(params)[param]


def _field_type(dotted: str, config: Config | None = None) -> Any:
    """Type of a dotted Config field, or ConfigError naming the bad part."""
    if dotted.startswith("loss."):
        return _objective_field_type(dotted, config)
    cls: Any = Config
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"search.space.{dotted}: '{'.'.join(parts[:i])}' is not a config section")
        names = {f.name for f in dataclasses.fields(cls)}
        if part not in names:
            raise ConfigError(f"search.space.{dotted}: unknown config field '{'.'.join(parts[: i + 1])}'")
        cls = typing.get_type_hints(cls)[part]
    if dataclasses.is_dataclass(cls):
        raise ConfigError(f"search.space.{dotted}: is a section, not a field")
    return cls


def _number(spec: dict, key: str, where: str) -> float:
    if key not in spec:
        raise ConfigError(f"{where}: missing '{key}'")
    try:
        return float(spec[key])
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{key}: expected a number, got {spec[key]!r}") from None


def parse_space(raw: dict[str, Any], config: Config | None = None) -> Space:
    dims, weights = [], None
    for name, spec in raw.items():
        where = f"search.space.{name}"
        if not isinstance(spec, dict) or "type" not in spec:
            raise ConfigError(f"{where}: expected a mapping with 'type' (one of {', '.join(KINDS)})")
        kind = spec["type"]
        extra = set(spec) - {"type", "low", "high", "values", "value"}
        if extra:
            raise ConfigError(f"{where}: unknown key '{sorted(extra)[0]}'")
        if name == WEIGHTS_KEY:
            if kind not in WEIGHT_KINDS:
                raise ConfigError(f"{where}.type: expected one of {', '.join(WEIGHT_KINDS)}, got '{kind}'")
            low, high = _number(spec, "low", where), _number(spec, "high", where)
            if not 0.0 <= low < high:
                raise ConfigError(f"{where}: need 0 <= low < high, got low={low}, high={high}")
            weights = WeightSpace(kind, low, high)
            continue
        _field_type(name, config)
        if kind not in KINDS:
            raise ConfigError(f"{where}.type: expected one of {', '.join(KINDS)}, got '{kind}'")
        if kind in ("uniform", "loguniform", "int"):
            low, high = _number(spec, "low", where), _number(spec, "high", where)
            if not low < high:
                raise ConfigError(f"{where}: need low < high, got low={low}, high={high}")
            if kind == "loguniform" and low <= 0:
                raise ConfigError(f"{where}.low: loguniform needs low > 0, got {low}")
            dims.append(Dimension(name, kind, low, high))
        elif kind == "choice":
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}.values: expected a non-empty list")
            dims.append(Dimension(name, kind, values=tuple(values)))
        else:
            if "value" not in spec:
                raise ConfigError(f"{where}: missing 'value'")
            dims.append(Dimension(name, kind, values=(spec["value"],)))
    return Space(tuple(dims), weights)


def strengths_in(space: Space, config: Config) -> list[float]:
    """Every pool strength a trial may ask for (pools are generated before the search)."""
    for d in space.dimensions:
        if d.name == "pool.strength":
            if d.kind in ("choice", "fixed"):
                return sorted({float(v) for v in d.values})
            raise ConfigError("search.space.pool.strength: must be a 'choice' (each value is a pre-generated pool)")
    return [config.pool.strength]


def clusters_in(space: Space, config: Config) -> list[float]:
    """Every clusters-per-class multiple a trial may ask for (partitions are computed
    before the search, once per K)."""
    for d in space.dimensions:
        if d.name == "partition.clusters_per_class":
            if d.kind in ("choice", "fixed"):
                return sorted({float(v) for v in d.values})
            raise ConfigError(
                "search.space.partition.clusters_per_class: must be a 'choice' (e.g. [0.5, 1, 2, 4]): "
                "partitions are computed once per K before the search"
            )
    return [config.partition.clusters_per_class]


def flatten_params(params: dict[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """{'w': {'five': 0.2}, 'train.lr': 1e-3} -> {'w/five': 0.2, 'train.lr': 1e-3}."""
    out = {}
    for k, v in params.items():
        key = f"{prefix}{sep}{k}" if prefix else k
        if isinstance(v, dict) and v:
            out.update(flatten_params(v, key, sep))
        else:
            out[key] = v
    return out


def apply_params(config: Config, params: dict[str, Any], classes: list[str]) -> tuple[Config, list[float] | None]:
    """The trial's Config (dotted fields replaced) and its class weights in ``classes``
    order — never the dict's order, which searchers do not preserve (Optuna sorts)."""
    from raysynth.config import from_dict

    data = config.to_dict()
    weights = None
    for key, value in params.items():
        if key == "w":
            continue
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    trial = from_dict(Config, data)
    if "w" in params:
        missing = [c for c in classes if c not in params["w"]]
        if missing:
            raise KeyError(f"trial params have no weight for classes {missing}")
        weights = [float(params["w"][c]) for c in classes]
    return trial, weights
