"""The trial-scheduler registry: each file of this folder registers a builder that takes
the config and returns a Ray Tune scheduler (``search.scheduler.name``)."""

from __future__ import annotations

from typing import Any, Callable

from raysynth.config import Config
from raysynth.registry import Registry

SCHEDULERS: Registry[Callable[[Config], Any]] = Registry("scheduler")


def register_scheduler(name: str):
    return SCHEDULERS.register(name)


def build_scheduler(config: Config):
    return SCHEDULERS.get(config.search.scheduler.name, "search.scheduler.name")(config)
