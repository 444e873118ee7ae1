"""How a search runs (not what it searches: that is the config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from raysynth.storage import join

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
    # extra Ray Tune callbacks of a caller (fault-injection tests, chaos benchmark); a
    # resumed search keeps the callbacks it was started with (Tune restores them)
    callbacks: list = field(default_factory=list)

    def __post_init__(self):
        self.storage = str(self.storage)

    @property
    def directory(self) -> str:
        """Where Ray Tune keeps this search's state, beside raysynth's two records."""
        return join(self.storage, self.name)
