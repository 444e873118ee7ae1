"""The configuration reference (``docs/configuration.md``), generated from the fields:
each section's fields with their type, default, rules and help text, then each
objective's parameters and the ``finetune-generator`` options.

    python -m raysynth.reference > docs/configuration.md

A test regenerates it and fails when the file is stale.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from raysynth.config import Config, FinetuneOptions
from raysynth.config.typed import bound_text
from raysynth.generators import GENERATORS
from raysynth.losses import OBJECTIVES

HEADER = """# Configuration

Every option of a search config, generated from the fields' own help text and rules
(`python -m raysynth.reference > docs/configuration.md`; a test fails when this page is
stale). A config is one YAML file (`search_spaces/<dataset>.yaml`); any field can be set
on the command line with `--set section.field=value`. A value outside its rule exits 2
with one line naming the field.
"""


def _type(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _rules(metadata: typing.Mapping) -> str:
    parts = []
    if "choices" in metadata:
        parts.append("one of " + ", ".join(f"`{c}`" for c in metadata["choices"]))
    for key, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        if key in metadata:
            parts.append(f"{sign} {bound_text(metadata[key])}")
    return "; ".join(parts)


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return ""
    return f"`{value!r}`" if value not in ("", None) else ("`None`" if value is None else '`""`')


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def fields_table(cls: type, prefix: str) -> list[str]:
    """One markdown table of a dataclass's leaf fields (nested dataclasses get their own)."""
    hints = typing.get_type_hints(cls)
    rows, nested = [], []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            nested.append((tp, f"{name}.", f.metadata.get("help", "")))
            continue
        rows.append(f"| `{name}` | {_cell(_type(tp))} | {_cell(_default(f))} | {_cell(_rules(f.metadata))} | {_cell(f.metadata.get('help', ''))} |")
    out = []
    if rows:
        out += ["| field | type | default | rule | meaning |", "|---|---|---|---|---|", *rows, ""]
    for tp, sub, text in nested:
        out += [f"### `{sub.rstrip('.')}`", "", text, "", *fields_table(tp, sub)]
    return out


def configuration_markdown() -> str:
    lines = [HEADER, "## Sections", ""]
    hints = typing.get_type_hints(Config)
    top = [f for f in dataclasses.fields(Config) if not dataclasses.is_dataclass(hints[f.name])]
    lines += ["### Top level", "", "| field | type | default | rule | meaning |", "|---|---|---|---|---|"]
    lines += [f"| `{f.name}` | {_cell(_type(hints[f.name]))} | {_cell(_default(f))} | {_cell(_rules(f.metadata))} | {_cell(f.metadata.get('help', ''))} |" for f in top]
    lines.append("")
    for f in dataclasses.fields(Config):
        if dataclasses.is_dataclass(hints[f.name]):
            lines += [f"### `{f.name}`", "", f.metadata.get("help", ""), "", *fields_table(hints[f.name], f"{f.name}.")]
    lines += ["## Objectives", "", "`loss: {<name>: {<parameter>: value}}` selects objectives and sets their parameters; "
              "their terms are summed.", ""]
    for name, cls in sorted(OBJECTIVES.items()):
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        lines += [f"### `loss.{name}`", "", doc, "", *fields_table(cls.Params, f"loss.{name}.")]
    lines += ["## Generator options", "", "`pool.options` of the generator `pool.generator` names.", ""]
    for name, cls in sorted(GENERATORS.items()):
        params = getattr(cls, "Params", None)
        if params is not None and dataclasses.fields(params):
            lines += [f"### `pool.generator: {name}`", "", *fields_table(params, "pool.options.")]
    lines += ["## `raysynth finetune-generator`", "", "Each field is a flag (`batch_size` is `--batch-size`).", "",
              *fields_table(FinetuneOptions, "")]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(configuration_markdown(), end="")
