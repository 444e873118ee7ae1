"""CUB-200-2011 (Wah et al., 2011): 200 bird species, the official train/test split.

Expected layout under ``--data-root`` (the extracted ``CUB_200_2011.tgz``)::

    images.txt              <image id> <relative path>
    image_class_labels.txt  <image id> <class id, 1-based>
    train_test_split.txt    <image id> <1 = train, 0 = test>
    classes.txt             <class id> <001.Black_footed_Albatross>
    images/<class dir>/<file>.jpg

Validation is carved from the official train split (``data.val_per_class`` per class,
fixed seed); the k shots come from the rest. Class names are made readable
("001.Black_footed_Albatross" -> "black footed albatross"); the metaclass is "bird".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raysynth.config import ConfigError, DataConfig
from raysynth.data.base import FewShotSplit, register_dataset, split_from_files
from raysynth.data.images import dataset_root, readable_class_name, require_files

FILES = ["images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt", "images"]
WHERE = "download CUB_200_2011.tgz from https://data.caltech.edu/records/65de6-vp158 and extract it (--data-root CUB_200_2011)"


def _root(config: DataConfig) -> Path:
    if not config.root:
        raise ConfigError(f"data.root: dataset 'cub' needs --data-root; {WHERE}")
    return dataset_root(config.root, "cub", WHERE)


def check(config: DataConfig) -> None:
    require_files(_root(config), FILES, "CUB-200-2011", WHERE)


def _table(path: Path) -> dict[int, str]:
    rows = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise ConfigError(f"data.root: {path} line {n} is not '<id> <value>': {line[:60]!r}")
        rows[int(parts[0])] = parts[1].strip()
    return rows


def _check_consistent(root: Path, images: dict, labels: dict, is_train: dict, classes: dict) -> None:
    """The four index files name the same images, every label a class of classes.txt,
    every split flag 0 or 1: a ConfigError naming the first file and id that do not."""
    for name, table in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train)):
        missing = sorted(set(images) - set(table))[:1]
        if missing:
            raise ConfigError(f"data.root: image id {missing[0]} of images.txt has no line in {root / name}")
        extra = sorted(set(table) - set(images))[:1]
        if extra:
            raise ConfigError(f"data.root: {root / name} names image id {extra[0]}, which images.txt lacks")
    for i, label in labels.items():
        if not label.isdigit() or int(label) not in classes:
            raise ConfigError(f"data.root: {root / 'image_class_labels.txt'}: image {i} has class {label!r}, "
                              f"which classes.txt lacks ({len(classes)} classes)")
    for i, flag in is_train.items():
        if flag not in ("0", "1"):
            raise ConfigError(f"data.root: {root / 'train_test_split.txt'}: image {i} has {flag!r}, expected 1 (train) or 0 (test)")


@register_dataset("cub", check=check)
def load_cub_split(config: DataConfig) -> FewShotSplit:
    root = _root(config)
    check(config)
    images, labels, is_train, classes = (_table(root / f) for f in FILES[:4])
    _check_consistent(root, images, labels, is_train, classes)
    class_ids = sorted(classes)
    index = {c: i for i, c in enumerate(class_ids)}
    names = [readable_class_name(classes[c]) for c in class_ids]
    ids = sorted(images)
    paths = [root / "images" / images[i] for i in ids]
    y = np.array([index[int(labels[i])] for i in ids], dtype=np.int64)
    train = np.array([is_train[i] == "1" for i in ids])
    return split_from_files(
        "cub", config, names, "bird",
        train=([p for p, t in zip(paths, train) if t], y[train]),
        test=([p for p, t in zip(paths, train) if not t], y[~train]),
    )
