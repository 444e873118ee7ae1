"""Datasets and few-shot splits. Each dataset is one module registered by name."""

from raysynth.data.base import DATASETS, FewShotSplit, ImageSet, load_split, register_dataset
from raysynth.data import digits as _digits  # noqa: F401  (registers "digits")

__all__ = ["DATASETS", "FewShotSplit", "ImageSet", "load_split", "register_dataset"]
