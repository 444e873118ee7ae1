"""Loading a config: a YAML file, then ``--set key.path=value`` overrides, then coercion."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import typing
from pathlib import Path
from typing import Any

import yaml

from raysynth.config.sections import Config, SearchConfig
from raysynth.config.typed import ConfigError, from_dict

MAX_VALUES = 100_000  # a config has hundreds; more means anchors nested to expand exponentially


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error
    (PyYAML keeps the last and the first value is lost without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key != "<<" and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' given twice in one mapping (YAML would keep only the last)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def safe_load(text: str) -> Any:
    """``yaml.safe_load``, refusing duplicate keys (the safe loader, driven as
    ``yaml.safe_load`` drives it)."""
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_json(path: str | Path, what: str = "data.root") -> Any:
    """A JSON file, or a one-line ConfigError naming it (``what``: the setting it came
    from): unreadable, not JSON, or an object with a key given twice."""

    def unique(pairs):
        keys = [k for k, _ in pairs]
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice is not None:
            raise ConfigError(f"{what}: {path}: key '{twice}' given twice in one object")
        return dict(pairs)

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=unique)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what}: cannot read {path} ({type(exc).__name__})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what}: {path} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def check_plain(data: Any, where: str = "") -> None:
    """Loaded YAML is plain data a config can hold: no value that contains itself (a
    recursive anchor), no anchors that expand past MAX_VALUES values, no NaN/inf, no
    dates (YAML reads 2024-01-01 as one). A one-line ConfigError naming the path."""
    count = 0
    ancestors: set[int] = set()

    def walk(node: Any, path: str) -> None:
        nonlocal count
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"{path or 'config'}: expands to more than {MAX_VALUES} values (nested YAML anchors?)")
        if isinstance(node, (dict, list)):
            if id(node) in ancestors:
                raise ConfigError(f"{path or 'config'}: a recursive YAML anchor (the value contains itself)")
            ancestors.add(id(node))
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                walk(value, f"{path}[{key}]" if isinstance(node, list) else f"{path}.{key}" if path else str(key))
            ancestors.discard(id(node))
        elif isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{path}: must be a finite number, got {node}")
        elif isinstance(node, (datetime.date, datetime.datetime)):
            raise ConfigError(f"{path}: got the date {node.isoformat()}; expected a number or text (quote text)")
        elif not isinstance(node, (str, int, float, bool, type(None))):
            raise ConfigError(f"{path}: unsupported YAML value of type {type(node).__name__}")

    walk(data, where)


def _parse_scalar(text: str, where: str) -> Any:
    try:
        value = safe_load(text)
    except yaml.constructor.ConstructorError as exc:  # a key given twice
        raise ConfigError(f"--set {where}: {exc.problem}") from None
    except yaml.YAMLError:
        return text
    check_plain(value, where)
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str | tuple[str, Any]]) -> dict[str, Any]:
    """Apply overrides to a raw config mapping: ``key.path=value`` strings (``--set``: the
    value parsed as YAML) or ``(key.path, value)`` pairs (a command's typed flags: the value
    as it is). Either way the value is then coerced and checked by the field's rules."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        if isinstance(item, tuple):
            key, typed = item
            value = lambda typed=typed, key=key: typed  # noqa: E731
        elif "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        else:
            key, raw = item.split("=", 1)
            value = lambda raw=raw, key=key: _parse_scalar(raw, key)  # noqa: E731
        parts = key.strip().split(".")
        cls: Any = Config
        node = data
        for i, part in enumerate(parts):
            if cls is None or not dataclasses.is_dataclass(cls):
                # inside a free-form mapping (pool.quality, search.space): any key is allowed
                if i < len(parts) - 1:
                    node = node.setdefault(part, {})
                    continue
                node[part] = value()
                break
            fields = {f.name: f for f in dataclasses.fields(cls)}
            if part not in fields:
                raise ConfigError(f"--set {key}: unknown config field '{'.'.join(parts[: i + 1])}'")
            tp = typing.get_type_hints(cls)[part]
            if i == len(parts) - 1:
                node[part] = value()
            elif cls is SearchConfig and part == "space":
                # search-space keys are themselves dotted field names: the rest is one key
                space = node.setdefault(part, {})
                if not isinstance(space, dict):
                    raise ConfigError(f"--set {key}: 'space' is not a mapping")
                space[".".join(parts[i + 1 :])] = value()
                break
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"--set {key}: '{part}' is not a mapping")
                cls = tp if dataclasses.is_dataclass(tp) else None
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--space: {path} is a directory, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"search space file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"--space: {path} is not a text (UTF-8) YAML file") from None
    except OSError as exc:
        raise ConfigError(f"--space: cannot read {path} ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise ConfigError(f"--space: {path} is not a text YAML file (it holds NUL bytes)")
    try:
        data = safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        check_plain(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return data


def parse_config(path: str | Path | None = None, overrides: list | None = None) -> Config:
    """YAML file + ``--set`` overrides -> a typed Config (types, choices and ranges checked;
    the rules of each section are checked by ``raysynth.validate.load_config``)."""
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    if isinstance(data.get("loss"), dict):
        # `loss: {bound:}` in YAML selects an objective with its defaults
        data["loss"] = {k: ({} if v is None else v) for k, v in data["loss"].items()}
    return from_dict(Config, data)


def flatten(node: Any, path: tuple = (), lists: bool = False) -> dict[tuple, Any]:
    """A nested mapping -> {path: leaf}: non-empty mappings are descended, and lists too
    when ``lists`` (their levels are int indices, as Ray Tune's config paths)."""
    if isinstance(node, dict) and node:
        items = node.items()
    elif lists and isinstance(node, list) and node:
        items = enumerate(node)
    else:
        return {path: node}
    out: dict[tuple, Any] = {}
    for key, value in items:
        out.update(flatten(value, (*path, key), lists))
    return out


def nest(pairs) -> dict:
    """(path, value) pairs -> the nested mapping (:func:`flatten`'s inverse): levels whose
    keys are 0..n-1 become lists again, so a flattened list keeps its type."""
    root: dict = {}
    for path, value in pairs:
        node = root
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    def rebuild(node):
        if not isinstance(node, dict):
            return node
        items = {k: rebuild(v) for k, v in node.items()}
        if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(len(items))):
            return [items[i] for i in range(len(items))]
        return items

    return rebuild(root)


def flatten_params(params: dict[str, Any], sep: str = "/") -> dict[str, Any]:
    """{'w': {'five': 0.2}, 'train.lr': 1e-3} -> {'w/five': 0.2, 'train.lr': 1e-3}
    (nested configs and trial params as MLflow keys; lists stay values)."""
    if not params:
        return {}
    return {sep.join(str(p) for p in path): value for path, value in flatten(params).items()}


def nest_params(flat: dict[str, Any], sep: str = "/") -> dict[str, Any]:
    """:func:`flatten_params`' inverse."""
    return nest((tuple(key.split(sep)), value) for key, value in flat.items())


def get_path(data: dict, dotted: str) -> Any:
    """The value at a dotted path of a nested mapping (``train.lr``)."""
    node = data
    for part in dotted.split("."):
        node = node[part]
    return node


def set_path(data: dict, dotted: str, value: Any) -> None:
    """Set the value at a dotted path of a nested mapping, making the levels it lacks."""
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
