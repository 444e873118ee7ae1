"""Search spaces: YAML -> typed dimensions -> Ray Tune distributions.

``search.space`` maps a dotted config field (``loss.<objective>.<parameter>`` for an
objective's weights, e.g. ``loss.bound.lam1``) to a distribution, plus the special key
``class_weights`` for UniCon's per-class weights of the synthetic data::

    space:
      train.lr: {type: loguniform, low: 3.0e-4, high: 1.0e-2}
      train.syn_loss_weight: {type: uniform, low: 0.25, high: 2.0}
      class_weights: {type: per_class, low: 0.0, high: 1.0}

Types: uniform, loguniform, int, choice (``values``), fixed (``value``), and tie
(``{type: tie, to: loss.bound.lam1, factor: 10}``: this field = factor x that field, as
the bound paper keeps λ2 = 10·λ1). In a trial's config the weights live under ``w``
(``w/<class>`` once flattened, as in MLflow).

Per-class weights have three parameterisations (:mod:`raysynth.search.weights`):

* ``per_class`` — one dimension per class (UniCon's; sensible up to ~20 classes);
* ``grouped`` — ``groups`` groups of classes (``by: quality`` quantiles of the measured
  fidelity, or ``by: features`` k-means of class-mean features), one weight per group
  (``w_group/g<i>``);
* ``quality`` — w_c = sigmoid(a + b·q_c) with ``a`` and ``b`` searched (``w_quality/a``,
  ``w_quality/b``) and q_c each class's measured fidelity, before the search.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from raysynth.config import Config, ConfigError

KINDS = ("uniform", "loguniform", "int", "choice", "fixed", "tie")
WEIGHT_KINDS = ("per_class", "grouped", "quality")
GROUP_BY = ("quality", "features")
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
    low: float = 0.0
    high: float = 1.0
    groups: int = 0  # grouped
    by: str = "quality"  # grouped
    a: tuple[float, float] = (-4.0, 4.0)  # quality: intercept range
    b: tuple[float, float] = (0.0, 4.0)  # quality: slope range (b > 0: trust follows fidelity)


@dataclass(frozen=True)
class Space:
    dimensions: tuple[Dimension, ...]
    weights: WeightSpace | None

    def to_tune(self, classes: list[str]) -> dict[str, Any]:
        from ray import tune

        space: dict[str, Any] = {}
        for d in self.dimensions:
            if d.kind == "tie":
                continue  # derived in apply_params, never sampled
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
        w = self.weights
        if w is not None and w.kind == "per_class":
            space["w"] = {c: tune.uniform(w.low, w.high) for c in classes}
        elif w is not None and w.kind == "grouped":
            space["w_group"] = {f"g{i}": tune.uniform(w.low, w.high) for i in range(w.groups)}
        elif w is not None and w.kind == "quality":
            space["w_quality"] = {"a": tune.uniform(*w.a), "b": tune.uniform(*w.b)}
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
        if name == WEIGHTS_KEY:
            weights = _parse_weights(spec, where)
            continue
        extra = set(spec) - {"type", "low", "high", "values", "value", "to", "factor"}
        if extra:
            raise ConfigError(f"{where}: unknown key '{sorted(extra)[0]}'")
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
        elif kind == "tie":
            to = spec.get("to")
            if not isinstance(to, str):
                raise ConfigError(f"{where}.to: expected the dotted name of the field this one follows")
            _field_type(to, config)
            dims.append(Dimension(name, kind, values=(to, _number(spec, "factor", where))))
        elif kind == "choice":
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}.values: expected a non-empty list")
            dims.append(Dimension(name, kind, values=tuple(values)))
        else:
            if "value" not in spec:
                raise ConfigError(f"{where}: missing 'value'")
            dims.append(Dimension(name, kind, values=(spec["value"],)))
    searched = {d.name for d in dims}
    for d in dims:
        if d.kind == "tie" and d.values[0] in searched and next(x for x in dims if x.name == d.values[0]).kind == "tie":
            raise ConfigError(f"search.space.{d.name}.to: '{d.values[0]}' is itself a tie")
    return Space(tuple(dims), weights)


def _parse_weights(spec: dict, where: str) -> WeightSpace:
    kind = spec["type"]
    if kind not in WEIGHT_KINDS:
        raise ConfigError(f"{where}.type: expected one of {', '.join(WEIGHT_KINDS)}, got '{kind}'")
    allowed = {"per_class": {"low", "high"}, "grouped": {"low", "high", "groups", "by"}, "quality": {"a", "b"}}[kind]
    extra = set(spec) - allowed - {"type"}
    if extra:
        raise ConfigError(f"{where}: unknown key '{sorted(extra)[0]}' for type {kind} (allowed: {', '.join(sorted(allowed))})")
    if kind == "quality":
        ranges = {}
        for key, default in (("a", (-4.0, 4.0)), ("b", (0.0, 4.0))):
            value = spec.get(key, list(default))
            if not (isinstance(value, list) and len(value) == 2):
                raise ConfigError(f"{where}.{key}: expected [low, high], got {value!r}")
            lo, hi = (_number({"v": v}, "v", f"{where}.{key}") for v in value)
            if not lo < hi:
                raise ConfigError(f"{where}.{key}: need low < high, got {value!r}")
            ranges[key] = (lo, hi)
        return WeightSpace(kind, a=ranges["a"], b=ranges["b"])
    low, high = _number(spec, "low", where), _number(spec, "high", where)
    if not 0.0 <= low < high:
        raise ConfigError(f"{where}: need 0 <= low < high, got low={low}, high={high}")
    if kind == "per_class":
        return WeightSpace(kind, low, high)
    groups = spec.get("groups")
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ConfigError(f"{where}.groups: expected an integer >= 1, got {groups!r}")
    by = spec.get("by", "quality")
    if by not in GROUP_BY:
        raise ConfigError(f"{where}.by: expected one of {', '.join(GROUP_BY)}, got '{by}'")
    return WeightSpace(kind, low, high, groups=groups, by=by)


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


def apply_params(
    config: Config, params: dict[str, Any], classes: list[str], context=None
) -> tuple[Config, list[float] | None]:
    """The trial's Config (dotted fields replaced, ties resolved) and its class weights
    in ``classes`` order — never the dict's order, which searchers do not preserve.
    ``context`` (a :class:`raysynth.search.weights.WeightContext`) carries the measured
    qualities/groups the ``grouped`` and ``quality`` parameterisations need."""
    from raysynth.config import from_dict
    from raysynth.search.weights import WEIGHT_PARAM_KEYS, class_weights

    data = config.to_dict()

    def get(dotted: str):
        node = data
        for p in dotted.split("."):
            node = node[p]
        return node

    def put(dotted: str, value) -> None:
        node = data
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value

    for key, value in params.items():
        if key not in WEIGHT_PARAM_KEYS:
            put(key, value)
    space = parse_space(config.search.space) if config.search.space else Space((), None)
    for d in space.dimensions:
        if d.kind == "tie":
            to, factor = d.values
            put(d.name, factor * get(to))
    trial = from_dict(Config, data)
    return trial, class_weights(space.weights, params, classes, context)
