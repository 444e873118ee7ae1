"""Datasets and few-shot splits. Each dataset is one module that registers itself by name;
adding a dataset is adding a file to this folder."""

from raysynth.config import Config, ConfigError
from raysynth.data.base import DATASETS, FewShotSplit, ImageSet, load_split, register_dataset
from raysynth.registry import import_modules

import_modules(__name__)


def check(config: Config) -> None:
    """The dataset and the data section (run first: the most basic thing to get right)."""
    entry = DATASETS.get(config.dataset, "dataset")
    if entry.check is not None:
        entry.check(config.data)
    shots = config.data.shots
    if shots != "all" and (isinstance(shots, str) or shots < 1):
        raise ConfigError(f"data.shots: must be an integer >= 1 or 'all', got {shots!r}")
    if not entry.has_base_classes and not config.model.pretrained:
        raise ConfigError(
            f"model.pretrained: dataset '{config.dataset}' has no base classes to pretrain on; give an "
            "open_clip pretrained tag (e.g. openai) or a checkpoint path"
        )


__all__ = ["DATASETS", "FewShotSplit", "ImageSet", "check", "load_split", "register_dataset"]
