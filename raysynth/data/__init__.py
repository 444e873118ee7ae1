"""Datasets and few-shot splits. Each dataset is one module registered by name."""

from raysynth.data.base import DATASET_CHECKS, DATASETS, FewShotSplit, ImageSet, load_split, register_dataset
from raysynth.data import cub as _cub  # noqa: F401  (registers "cub")
from raysynth.data import digits as _digits  # noqa: F401  (registers "digits")
from raysynth.data import flowers as _flowers  # noqa: F401  (registers "flowers")
from raysynth.data import folder as _folder  # noqa: F401  (registers "folder")

__all__ = ["DATASETS", "DATASET_CHECKS", "FewShotSplit", "ImageSet", "load_split", "register_dataset"]
