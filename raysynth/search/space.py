"""Search spaces: YAML -> typed dimensions -> Ray Tune distributions.

``search.space`` maps a dotted config field (``loss.<objective>.<parameter>`` for an
objective's weights, e.g. ``loss.bound.lam1``) to a distribution, plus the special key
``class_weights`` for UniCon's per-class weights of the synthetic data::

    space:
      train.lr: {type: loguniform, low: 3.0e-4, high: 1.0e-2}
      loss.ce.synthetic: {type: uniform, low: 0.25, high: 2.0}
      class_weights: {type: per_class, low: 0.0, high: 1.0}

Types: uniform, loguniform, int, choice (``values``), fixed (``value``), and tie
(``{type: tie, to: loss.bound.lam1, factor: 10}``: this field = factor x that field, as
the bound paper keeps λ2 = 10·λ1). In a trial's config the weights live under ``w``
(``w/<class>`` once flattened, as in MLflow).

Per-class weights have several parameterisations, one file each in
:mod:`raysynth.search.weightings` (``per_class``, ``grouped``, ``quality``).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from raysynth.config import Config, ConfigError, PoolConfig, check_rules, coerce, from_dict, get_path, set_path
from raysynth.losses import OBJECTIVES
from raysynth.prepare import Plan
from raysynth.search.weightings import WEIGHTS_KEY, Weighting, parse_weighting, weight_param_keys
from raysynth.search.weightings.base import number as _number

# How each dimension kind becomes a Ray Tune distribution ("tie" is derived, never sampled).
TUNE_DOMAINS = {
    "uniform": lambda d, tune: tune.uniform(d.low, d.high),
    "loguniform": lambda d, tune: tune.loguniform(d.low, d.high),
    "int": lambda d, tune: tune.randint(int(d.low), int(d.high) + 1),
    "choice": lambda d, tune: tune.choice(list(d.values)),
    "fixed": lambda d, tune: d.values[0],
}
KINDS = (*TUNE_DOMAINS, "tie")
# pool.strengths is searched over names in pool.strength_sets (a trial resolves its name)
SETS_DIMENSION = "pool.strengths"
# Fields no trial can change, each fixed by something made or set once when the search
# starts (first match wins); the few fields under these prefixes a trial does set are
# in SEARCHABLE.
_PREPARED = "made once before the search, the same for every trial"
FIXED = (
    ("dataset", f"the dataset and its split are {_PREPARED}"),
    ("data.", f"the few-shot split is {_PREPARED}"),
    ("model.name", f"the backbone is {_PREPARED}"),
    ("model.pretrained", f"the backbone is {_PREPARED}"),
    ("model.pretrain", f"the backbone is {_PREPARED}"),
    ("pool.", f"the pools are {_PREPARED}; a search varies pool.strength, pool.strengths (a set's name), "
              "pool.gamma and the filter, which act when a pool is loaded"),
    ("partition.", f"partitions are {_PREPARED}; search partition.clusters_per_class (a choice) or partition.scope"),
    ("train.epochs", "ASHA's max_t and every trial's progress are set from it when the search starts"),
    ("train.workers", "a trial's resources are fixed when the search starts"),
    ("train.threads", "a trial's resources are fixed when the search starts"),
    ("resources.", "a trial's resources are fixed when the search starts"),
    ("search.", "the search's own settings are not a trial's"),
)
SEARCHABLE = {"pool.strength", SETS_DIMENSION, "pool.gamma", "pool.filter", "pool.filter_fraction",
              "partition.clusters_per_class", "partition.scope"}


def _check_searchable(dotted: str, where: str) -> None:
    if dotted in SEARCHABLE:
        return
    for prefix, reason in FIXED:  # a field, or a section ("pool.") and every field in it
        if dotted == prefix.rstrip(".") or dotted.startswith(prefix.rstrip(".") + "."):
            raise ConfigError(f"{where}: cannot be searched: {reason}")


def _is_int_field(tp: Any) -> bool:
    """An integer field (``int``, or a union whose only number is ``int``)."""
    args = typing.get_args(tp) if typing.get_origin(tp) is not None else (tp,)
    return int in args and float not in args


@dataclass(frozen=True)
class Dimension:
    name: str  # dotted config field
    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple | None = None


@dataclass(frozen=True)
class Space:
    dimensions: tuple[Dimension, ...]
    weights: Weighting | None

    def to_tune(self, classes: list[str]) -> dict[str, Any]:
        from ray import tune

        space: dict[str, Any] = {d.name: TUNE_DOMAINS[d.kind](d, tune) for d in self.dimensions if d.kind != "tie"}
        if self.weights is not None:
            space[self.weights.param_key] = self.weights.to_tune(classes)
        return space

    def plan(self, config: Config) -> Plan:
        """What the search may ask for, so what :func:`raysynth.prepare.prepare` makes
        before it: every pool variant, every K, and the class quality the weighting
        needs (measured on each pool variant)."""
        pools = pool_variants(self, config)
        names = {d.name: d for d in self.dimensions}
        param = SETS_DIMENSION if SETS_DIMENSION in names else "pool.strength" if "pool.strength" in names else ""
        values = []
        if param == SETS_DIMENSION:
            values = list(dict.fromkeys(names[param].values))
        elif param:
            values = sorted({float(v) for v in names[param].values})
        quality = self.weights.quality_request() if self.weights is not None else None
        return Plan(pools, clusters_in(self, config), quality, param if len(pools) > 1 else "", values)

    def class_weights(self, params: dict[str, Any], classes: list[str], context=None) -> list[float] | None:
        """A trial's per-class weights in ``classes`` order (None: no weights searched)."""
        if self.weights is None:
            return None
        return self.weights.weights(params, classes, context.for_params(params) if context is not None else None)


def _objective_field(dotted: str, config: Config | None) -> tuple[Any, Any]:
    """``loss.<objective>.<param>``: the objective must be selected in the loss section."""
    parts = dotted.split(".")
    if len(parts) != 3:
        raise ConfigError(f"search.space.{dotted}: expected loss.<objective>.<parameter>")
    _, name, param = parts
    if name not in OBJECTIVES:
        raise ConfigError(f"search.space.{dotted}: unknown objective '{name}' (known: {', '.join(sorted(OBJECTIVES))})")
    if config is not None and name not in (config.loss or {"ce": {}}):
        raise ConfigError(f"search.space.{dotted}: objective '{name}' is not selected in the loss section")
    params = OBJECTIVES[name].Params
    fields = {f.name: f for f in dataclasses.fields(params)}
    if param not in fields:
        raise ConfigError(f"search.space.{dotted}: unknown parameter '{param}' of '{name}' (known: {', '.join(sorted(fields))})")
    return typing.get_type_hints(params)[param], fields[param].metadata


def _field(dotted: str, config: Config | None = None) -> tuple[Any, Any]:
    """Type and rules (field metadata) of a dotted Config field, or a ConfigError naming
    the bad part."""
    if dotted.startswith("loss."):
        return _objective_field(dotted, config)
    cls: Any = Config
    metadata: Any = {}
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"search.space.{dotted}: '{'.'.join(parts[:i])}' is not a config section")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            raise ConfigError(f"search.space.{dotted}: unknown config field '{'.'.join(parts[: i + 1])}'")
        cls, metadata = typing.get_type_hints(cls)[part], fields[part].metadata
    if dataclasses.is_dataclass(cls):
        raise ConfigError(f"search.space.{dotted}: is a section, not a field")
    return cls, metadata


def _check_values(dotted: str, values, where: str) -> None:
    """Every value a dimension can give is one its field accepts (type, range, choices):
    a strength of 1.5 or 0 epochs is refused here, not in a trial."""
    tp, metadata = _field(dotted)
    for label, value in values:
        at = f"{where}.{label}"
        check_rules(coerce(value, tp, at), metadata, at)


def parse_space(raw: dict[str, Any], config: Config | None = None) -> Space:
    dims, weights = [], None
    for name, spec in raw.items():
        where = f"search.space.{name}"
        if not isinstance(spec, dict) or "type" not in spec:
            raise ConfigError(f"{where}: expected a mapping with 'type' (one of {', '.join(KINDS)})")
        kind = spec["type"]
        if name == WEIGHTS_KEY:
            weights = parse_weighting(spec, where)
            continue
        extra = set(spec) - {"type", "low", "high", "values", "value", "to", "factor"}
        if extra:
            raise ConfigError(f"{where}: unknown key '{sorted(extra)[0]}'")
        tp, _ = _field(name, config)
        _check_searchable(name, where)
        if name == SETS_DIMENSION and kind != "choice":
            raise ConfigError(f"{where}.type: pool.strengths is searched as a 'choice' of pool.strength_sets names")
        if kind not in KINDS:
            raise ConfigError(f"{where}.type: expected one of {', '.join(KINDS)}, got '{kind}'")
        if kind in ("uniform", "loguniform", "int"):
            low, high = _number(spec, "low", where), _number(spec, "high", where)
            if not low < high:
                raise ConfigError(f"{where}: need low < high, got low={low}, high={high}")
            if kind == "loguniform" and low <= 0:
                raise ConfigError(f"{where}.low: loguniform needs low > 0, got {low}")
            if kind != "int" and _is_int_field(tp):
                raise ConfigError(f"{where}.type: '{kind}' draws real numbers and {name} is an integer field: use 'int' or 'choice'")
            _check_values(name, [("low", low), ("high", high)], where)
            dims.append(Dimension(name, kind, low, high))
        elif kind == "tie":
            to = spec.get("to")
            if not isinstance(to, str):
                raise ConfigError(f"{where}.to: expected the dotted name of the field this one follows")
            _field(to, config)
            dims.append(Dimension(name, kind, values=(to, _number(spec, "factor", where))))
        elif kind == "choice" and name == SETS_DIMENSION:
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}.values: expected a non-empty list of pool.strength_sets names")
            known = config.pool.strength_sets if config is not None else None
            for i, v in enumerate(values):
                if not isinstance(v, str) or (known is not None and v not in known):
                    raise ConfigError(
                        f"{where}.values[{i}]: '{v}' is not a name in pool.strength_sets "
                        f"(known: {', '.join(sorted(known)) if known else 'none'})")
            dims.append(Dimension(name, kind, values=tuple(values)))
        elif kind == "choice":
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}.values: expected a non-empty list")
            _check_values(name, [(f"values[{i}]", v) for i, v in enumerate(values)], where)
            dims.append(Dimension(name, kind, values=tuple(values)))
        else:
            if "value" not in spec:
                raise ConfigError(f"{where}: missing 'value'")
            _check_values(name, [("value", spec["value"])], where)
            dims.append(Dimension(name, kind, values=(spec["value"],)))
    for d in dims:
        if d.kind == "tie":
            _check_tie(d, {x.name: x for x in dims}, config)
    return Space(tuple(dims), weights)


def _check_tie(tie: Dimension, dims: dict[str, Dimension], config: Config | None) -> None:
    """A tie's values (factor x every value its field can take: the ends of a searched
    range, each choice, or the config's value) are values its own field accepts."""
    to, factor = tie.values
    where = f"search.space.{tie.name}"
    source = dims.get(to)
    if source is not None and source.kind == "tie":
        raise ConfigError(f"{where}.to: '{to}' is itself a tie")
    if source is None:
        values = [("value", get_path(config.to_dict(), to))] if config is not None and not to.startswith("loss.") else []
    elif source.kind in ("uniform", "loguniform", "int"):
        values = [("low", source.low), ("high", source.high)]
    else:
        values = [(f"values[{i}]", v) for i, v in enumerate(source.values)]
    _check_values(tie.name, [(f"factor (x {to}.{label} = {factor * v:g})", factor * v) for label, v in values
                             if isinstance(v, (int, float))], where)


def pool_variants(space: Space, config: Config) -> list[PoolConfig]:
    """Every pool a trial may ask for (pools are generated before the search): one per
    searched strength, or one per searched strength set (pool.strength_sets), or the
    config's own."""
    names = {d.name: d for d in space.dimensions}
    strength, sets = names.get("pool.strength"), names.get(SETS_DIMENSION)
    if strength is not None and (config.pool.strengths or sets is not None):
        raise ConfigError(
            "search.space.pool.strength: pool.strengths draws every image's strength; to search strengths beside "
            "sets, name them in pool.strength_sets (a one-value set is a fixed strength) and search pool.strengths")
    if strength is not None:
        if strength.kind not in ("choice", "fixed"):
            raise ConfigError("search.space.pool.strength: must be a 'choice' (each value is a pre-generated pool)")
        return [dataclasses.replace(config.pool, strength=float(v)) for v in sorted({float(v) for v in strength.values})]
    if sets is not None:
        return [dataclasses.replace(config.pool, strengths=list(config.pool.strength_sets[v])) for v in dict.fromkeys(sets.values)]
    return [config.pool]


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


def apply_params(
    config: Config, params: dict[str, Any], classes: list[str], context=None, space: Space | None = None
) -> tuple[Config, list[float] | None]:
    """The trial's Config (dotted fields replaced, ties resolved) and its class weights
    in ``classes`` order — never the dict's order, which searchers do not preserve.
    ``context`` (a :class:`raysynth.context.WeightContext`) carries the measured
    qualities/groups the ``grouped`` and ``quality`` parameterisations need; ``space``
    the parsed search space (default: parsed from ``config.search.space``)."""
    data = config.to_dict()
    for key, value in params.items():
        if key == SETS_DIMENSION and isinstance(value, str):  # a name in pool.strength_sets
            set_path(data, key, list(config.pool.strength_sets[value]))
        elif key not in weight_param_keys():
            set_path(data, key, value)
    if space is None:
        space = parse_space(config.search.space) if config.search.space else Space((), None)
    for d in space.dimensions:
        if d.kind == "tie":
            to, factor = d.values
            set_path(data, d.name, factor * get_path(data, to))
    trial = from_dict(Config, data)
    return trial, space.class_weights(params, classes, context)
