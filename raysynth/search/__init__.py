"""The search: its space, per-class weightings, searchers and schedulers (registries), a
trial, the Tuner, the results, the finals, and the driver (``run.run_search``)."""

from raysynth.cluster import check_resources
from raysynth.config import Config
from raysynth.search.schedulers import SCHEDULERS
from raysynth.search.searchers import SEARCHERS
from raysynth.search.space import parse_space


def check(config: Config) -> None:
    """The search section: a registered searcher and scheduler, resources, the space."""
    SEARCHERS.get(config.search.algorithm, "search.algorithm")
    SCHEDULERS.get(config.search.scheduler.name, "search.scheduler.name")
    check_resources(config)
    parse_space(config.search.space, config).plan(config)  # pools and K values it can prepare


__all__ = ["check"]
