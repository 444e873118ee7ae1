"""Any image-classification folder: ``root/<split>/<class>/*.jpg|png``.

Splits: ``train`` and ``test`` are required; ``val`` is used when present, else carved
from train (``data.val_per_class`` per class, fixed seed). Classes are the sorted
directory names of ``train`` (underscores become spaces in prompts); the metaclass is
``data.metaclass``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raysynth.config import ConfigError, DataConfig
from raysynth.data.base import FewShotSplit, register_dataset, split_from_files
from raysynth.data.images import dataset_root, require_files

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
WHERE = "expected root/train/<class>/*.jpg and root/test/<class>/*.jpg"


def _root(config: DataConfig) -> Path:
    if not config.root:
        raise ConfigError(f"data.root: dataset 'folder' needs --data-root; {WHERE}")
    return dataset_root(config.root, "folder", WHERE)


def check(config: DataConfig) -> None:
    require_files(_root(config), ["train", "test"], "image folder", WHERE)


def _scan(directory: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    paths, labels = [], []
    for c, name in enumerate(classes):
        if not (directory / name).is_dir():
            raise ConfigError(f"data.root: class '{name}' of train is missing from {directory}")
        files = sorted(p for p in (directory / name).iterdir() if p.suffix.lower() in SUFFIXES)
        paths += files
        labels += [c] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


@register_dataset("folder", check=check)
def load_folder_split(config: DataConfig) -> FewShotSplit:
    root = _root(config)
    check(config)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise ConfigError(f"data.root: {root / 'train'} has no class directories; {WHERE}")
    val = _scan(root / "val", classes) if (root / "val").is_dir() else None
    return split_from_files(
        "folder", config, [c.replace("_", " ") for c in classes], config.metaclass,
        train=_scan(root / "train", classes), test=_scan(root / "test", classes), val=val,
    )
