"""Synthetic pools: the content-addressed store (``store``), the sharded Ray Data
generation that fills it (``shards``, ``pipeline``), and what a trial applies when it
loads one (Diff-Mix soft labels in ``labels``, CLIP filter rules in ``filters``)."""

from raysynth.config import ConfigError, PoolConfig
from raysynth.generators import GENERATORS
from raysynth.generators.quality import parse_quality
from raysynth.pool.store import Pool, PoolStore, pool_key, pool_label


def check(pool: PoolConfig) -> None:
    """The pool section: a registered generator whose options parse, its environment
    (weights present), CLIP scores for a filter, and the quality map's values."""
    backend = GENERATORS.get(pool.generator, "pool.generator")
    backend.parse_options(pool.options)
    backend.check_environment(pool)
    if pool.clip_model:
        # here, not at the top: a generation actor imports this package and needs no open_clip
        from raysynth.models.backbone import model_config

        model_config(pool.clip_model, "pool.clip_model")
    if pool.filter != "none" and not pool.clip_model:
        raise ConfigError(f"pool.filter: '{pool.filter}' needs CLIP scores; set pool.clip_model")
    for name, value in pool.quality.items():
        parse_quality(value, f"pool.quality.{name}")
    for i, s in enumerate(pool.strengths):
        if not (isinstance(s, (int, float)) and 0.0 < s <= 1.0):
            raise ConfigError(f"pool.strengths[{i}]: must be in (0, 1], got {s!r}")
    for name, values in pool.strength_sets.items():
        if not values:
            raise ConfigError(f"pool.strength_sets.{name}: an empty set")
        for i, s in enumerate(values):
            if not (isinstance(s, (int, float)) and 0.0 < s <= 1.0):
                raise ConfigError(f"pool.strength_sets.{name}[{i}]: must be in (0, 1], got {s!r}")


__all__ = ["Pool", "PoolStore", "check", "pool_key", "pool_label"]
