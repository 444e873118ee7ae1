"""How a search runs (not what it searches: that is the config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

CONFIG_RECORD = "raysynth_config.json"  # the config a search was started with (checked on --resume)
PARENT_RECORD = "raysynth_parent_run.json"  # the search's MLflow parent run (adopted on --resume)


@dataclass
class SearchOptions:
    tracking_uri: str
    experiment: str
    storage: Path
    name: str
    resume: bool = False
    # extra Ray Tune callbacks of a caller (fault-injection tests, chaos benchmark); a
    # resumed search keeps the callbacks it was started with (Tune restores them)
    callbacks: list = field(default_factory=list)

    @property
    def directory(self) -> Path:
        """Where Ray Tune keeps this search's state, beside raysynth's two records."""
        return self.storage / self.name
