"""``load_config``: a YAML file and ``--set`` overrides, typed (``raysynth.config``), then
each section checked by the package that owns it — the top floor of the library, so
nothing below it imports upward to validate.

Order matters only for which error a config with several mistakes reports: the data
first (the most basic thing to get right), then what the pool, model, objectives,
training and search make of it.
"""

from __future__ import annotations

from pathlib import Path

from raysynth import data, losses, models, pool, search, train
from raysynth.config import Config, parse_config


def validate(config: Config) -> None:
    """Every section's own checks; a ConfigError (one line naming the field) if one fails."""
    data.check(config)
    pool.check(config.pool)
    models.check(config.model)
    losses.check(config)
    train.check(config)
    search.check(config)


def load_config(path: str | Path | None = None, overrides: list | None = None) -> Config:
    """Load a YAML config/search space, apply overrides (``--set`` strings or typed
    ``(key, value)`` pairs: :func:`raysynth.config.apply_overrides`), validate everything."""
    config = parse_config(path, overrides)
    validate(config)
    return config
