"""How a search runs (not what it searches: that is the config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from raysynth.storage import is_uri, join

CONFIG_RECORD = "raysynth_config.json"  # the config a search was started with (checked on --resume)
PARENT_RECORD = "raysynth_parent_run.json"  # the search's MLflow parent run (adopted on --resume)


@dataclass
class SearchOptions:
    tracking_uri: str
    experiment: str
    storage: str  # a local path or an object-store URI (raysynth.storage)
    name: str
    resume: bool = False
    # an MLflow experiment or parent run id whose finished trials seed the searcher
    warm_start: str | None = None
    # the Optuna searchers' study (an RDB URL); None: study_storage's default
    optuna_storage: str | None = None
    # register the searched model under this name in MLflow's Model Registry
    register: str | None = None
    # extra Ray Tune callbacks of a caller (fault-injection tests, chaos benchmark); a
    # resumed search keeps the callbacks it was started with (Tune restores them)
    callbacks: list = field(default_factory=list)

    def __post_init__(self):
        self.storage = str(self.storage)

    @property
    def directory(self) -> str:
        """Where Ray Tune keeps this search's state, beside raysynth's two records."""
        return join(self.storage, self.name)

    @property
    def config_record(self) -> str:
        """Where the config the search was started with is kept (checked on --resume)."""
        return join(self.directory, CONFIG_RECORD)

    @property
    def parent_record(self) -> str:
        """Where the id of the search's MLflow parent run is kept (adopted on --resume)."""
        return join(self.directory, PARENT_RECORD)

    @property
    def study_storage(self) -> str:
        """Where an Optuna searcher keeps its study (named after the search): the URL
        given, else ``<storage>/<name>/optuna.db`` (a local storage), else a sqlite file in
        this machine's cache (sqlite cannot live in a bucket)."""
        return study_storage(self.storage, self.name, self.optuna_storage)


def study_storage(storage: str, name: str, given: str | None = None) -> str:
    if given:
        return given
    if is_uri(storage):
        from raysynth.home import raysynth_home

        return f"sqlite:///{raysynth_home() / 'optuna' / f'{name}.db'}"
    return f"sqlite:///{Path(join(storage, name)).expanduser().resolve() / 'optuna.db'}"
