"""Typed dataclass fields: help text and rules on the field, coercion that names the field.

Generic (it knows no raysynth section): ``field_(help, default, choices=, ge=, gt=, le=,
lt=)`` declares a field; :func:`from_dict` builds a dataclass from plain data, checking
types, unknown keys, choices and ranges, with a one-line :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """Bad user input. The message is one line that names the field and what is wrong."""


def field_(
    text: str,
    default: Any = dataclasses.MISSING,
    factory: Any = dataclasses.MISSING,
    *,
    choices: tuple | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
):
    """A field with its help text and the rules :func:`from_dict` enforces."""
    metadata = {"help": text}
    rules = {"choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt}
    metadata.update({k: v for k, v in rules.items() if v is not None})
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def one_of(values) -> str:
    """'a', 'b' or 'c' (for messages)."""
    quoted = [f"'{v}'" for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently coerce) ``value`` against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {str(k): coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{where}: must be a finite number, got {value}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def check_rules(value: Any, metadata: typing.Mapping, where: str) -> None:
    """The enum and range rules a field declares (``_help(choices=, ge=, gt=, le=, lt=)``);
    on a list or mapping, each of its values."""
    if value is None:
        return
    if isinstance(value, (dict, list)):
        if any(k in metadata for k in ("choices", "ge", "gt", "le", "lt")):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                check_rules(item, metadata, f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]")
        return
    choices = metadata.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: must be {one_of(choices)}, got '{value}'")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    low = ("[", metadata["ge"]) if "ge" in metadata else ("(", metadata["gt"]) if "gt" in metadata else None
    high = ("]", metadata["le"]) if "le" in metadata else (")", metadata["lt"]) if "lt" in metadata else None
    ok = (
        (low is None or (value >= low[1] if low[0] == "[" else value > low[1]))
        and (high is None or (value <= high[1] if high[0] == "]" else value < high[1]))
    )
    if ok:
        return
    if low and high:
        raise ConfigError(f"{where}: must be in {low[0]}{bound_text(low[1])}, {bound_text(high[1])}{high[0]}, got {value}")
    if low:
        raise ConfigError(f"{where}: must be {'>=' if low[0] == '[' else '>'} {bound_text(low[1])}, got {value}")
    raise ConfigError(f"{where}: must be {'<=' if high[0] == ']' else '<'} {bound_text(high[1])}, got {value}")


def bound_text(x: float) -> str:
    """A rule's bound as a reader expects it: an integer whole (4294967295), else short (0.001)."""
    return str(x) if isinstance(x, int) else f"{x:g}"


def check_fields(obj: Any, where: str = "") -> None:
    """Every field's rules on a dataclass built directly (a library call, not
    :func:`from_dict`)."""
    for f in dataclasses.fields(obj):
        check_rules(getattr(obj, f.name), f.metadata, f"{where}.{f.name}" if where else f.name)


def flag_name(field_name: str) -> str:
    """The command-line flag of an options field: ``batch_size`` -> ``--batch-size``."""
    return "--" + field_name.replace("_", "-")


def from_dict(cls: type, data: dict[str, Any], where: str = "", flags: bool = False) -> Any:
    """Build dataclass ``cls`` from a mapping: unknown keys, wrong types and values
    outside a field's declared choices/range are errors that name the field (as a
    command-line flag, ``--batch-size``, when ``flags``)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = flag_name(key) if flags else f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config field '{path}' (known: {', '.join(sorted(fields))})")
        kwargs[key] = coerce(value, hints[key], path)
        check_rules(kwargs[key], fields[key].metadata, path)
    return cls(**kwargs)


