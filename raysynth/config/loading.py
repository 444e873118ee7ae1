"""Loading a config: a YAML file, then ``--set key.path=value`` overrides, then coercion."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import yaml

from raysynth.config.sections import Config, SearchConfig
from raysynth.config.typed import ConfigError, from_dict


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a raw config mapping."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        cls: Any = Config
        node = data
        for i, part in enumerate(parts):
            if cls is None or not dataclasses.is_dataclass(cls):
                # inside a free-form mapping (pool.quality, search.space): any key is allowed
                if i < len(parts) - 1:
                    node = node.setdefault(part, {})
                    continue
                node[part] = _parse_scalar(raw)
                break
            fields = {f.name: f for f in dataclasses.fields(cls)}
            if part not in fields:
                raise ConfigError(f"--set {key}: unknown config field '{'.'.join(parts[: i + 1])}'")
            tp = typing.get_type_hints(cls)[part]
            if i == len(parts) - 1:
                node[part] = _parse_scalar(raw)
            elif cls is SearchConfig and part == "space":
                # search-space keys are themselves dotted field names: the rest is one key
                space = node.setdefault(part, {})
                if not isinstance(space, dict):
                    raise ConfigError(f"--set {key}: 'space' is not a mapping")
                space[".".join(parts[i + 1 :])] = _parse_scalar(raw)
                break
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"--set {key}: '{part}' is not a mapping")
                cls = tp if dataclasses.is_dataclass(tp) else None
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search space file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """YAML file + ``--set`` overrides -> a typed Config (types, choices and ranges checked;
    the rules of each section are checked by ``raysynth.validate.load_config``)."""
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    if isinstance(data.get("loss"), dict):
        # `loss: {bound:}` in YAML selects an objective with its defaults
        data["loss"] = {k: ({} if v is None else v) for k, v in data["loss"].items()}
    return from_dict(Config, data)


def flatten_params(params: dict[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """{'w': {'five': 0.2}, 'train.lr': 1e-3} -> {'w/five': 0.2, 'train.lr': 1e-3}
    (nested configs and trial params as MLflow keys)."""
    out = {}
    for k, v in params.items():
        key = f"{prefix}{sep}{k}" if prefix else k
        if isinstance(v, dict) and v:
            out.update(flatten_params(v, key, sep))
        else:
            out[key] = v
    return out


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
