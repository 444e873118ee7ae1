"""The few-shot split every objective trains on, and the dataset registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from raysynth.config import ConfigError, DataConfig
from raysynth.home import fingerprint, raysynth_home
from raysynth.registry import Registry


@dataclass
class ImageSet:
    """Images (N x 3 x H x W: uint8 for decoded datasets, a quarter of float32's memory;
    float32 in [0, 1] for generated ones) with integer labels indexing ``classes``.
    :func:`float_images` gives float in [0, 1] of either."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | torch.Tensor) -> "ImageSet":
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index])


@dataclass
class FewShotSplit:
    """A dataset cut for few-shot learning.

    ``base`` (the base classes, for backbone pretraining) and ``train``/``val``/``test``
    over the novel classes, whose labels are re-indexed 0..C-1 in the order of ``classes``.
    ``val`` and ``test`` are fixed for a dataset; ``train`` is the k-shot sample of a seed.
    """

    name: str
    classes: list[str]
    base_classes: list[str]
    base: ImageSet
    train: ImageSet
    val: ImageSet
    test: ImageSet
    metaclass: str
    fingerprint: str
    # Images of the novel classes a generator may know beyond the shots (never val/test):
    # the embedded stand-in for the prior knowledge of a pretrained diffusion model.
    prior: ImageSet | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def float_images(images: torch.Tensor) -> torch.Tensor:
    """Images as float32 in [0, 1]: uint8 ones converted, float ones as they are."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


class AuditedImageSet(ImageSet):
    """The test split. Every read of its images is appended, with the time and the
    process, to ``RAYSYNTH_HOME/audit/test_reads.jsonl``: the record that the test split
    was only looked at after the search, never to choose anything."""

    def __getattribute__(self, name: str):
        if name == "images":
            _record_test_read()
        return object.__getattribute__(self, name)


def audit_path():
    return raysynth_home() / "audit" / "test_reads.jsonl"


def audit_event(event: str, **fields) -> None:
    import json
    import os
    import time

    path = audit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:  # one short line per write: appends do not interleave
        f.write(json.dumps({"event": event, "time": time.time(), "pid": os.getpid(), **fields}) + "\n")


def _record_test_read() -> None:
    audit_event("test_read")


@dataclass(frozen=True)
class DatasetEntry:
    load: Callable[[DataConfig], FewShotSplit]
    # cheap checks run when the config is loaded (the root and its metadata files exist),
    # so a missing dataset is exit 2 before anything starts
    check: Callable[[DataConfig], None] | None = None
    # base classes to pretrain a backbone on (else model.pretrained is required)
    has_base_classes: bool = False


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(name: str, check: Callable[[DataConfig], None] | None = None, has_base_classes: bool = False):
    def wrap(fn: Callable[[DataConfig], FewShotSplit]):
        DATASETS.add(name, DatasetEntry(fn, check, has_base_classes))
        return fn

    return wrap


def load_split(name: str, config: DataConfig) -> FewShotSplit:
    split = DATASETS.get(name, "dataset").load(config)
    split.test = AuditedImageSet(split.test.images, split.test.labels)
    return split


def stratified_holdout(
    labels: np.ndarray, per_class: list[int], seed: int
) -> list[np.ndarray]:
    """Cut each class's indices into consecutive chunks of the given sizes (+ the rest).

    Returns one index array per chunk plus a final one with everything left over; the
    permutation depends only on ``seed``, so the chunks are fixed for a dataset.
    """
    rng = np.random.default_rng(seed)
    chunks: list[list[int]] = [[] for _ in range(len(per_class) + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for j, size in enumerate(per_class):
            if start + size > len(idx):
                raise ConfigError(
                    f"data: class {c} has {len(idx)} images, too few for the requested splits {per_class}"
                )
            chunks[j].extend(idx[start : start + size])
            start += size
        chunks[-1].extend(idx[start:])
    return [np.sort(np.asarray(c, dtype=np.int64)) for c in chunks]


def sample_shots(labels: np.ndarray, shots: int | str, seed: int) -> np.ndarray:
    """Indices of ``shots`` examples per class ('all': every one), deterministic per seed."""
    if shots == "all":
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if shots > len(idx):
            raise ConfigError(f"data.shots: {shots} shots requested, class {c} has only {len(idx)} training images")
        out.append(rng.choice(idx, size=shots, replace=False))
    return np.sort(np.concatenate(out))


def split_fingerprint(name: str, config: DataConfig) -> str:
    return fingerprint(name, config.shots, config.seed, config.image_size, config.val_per_class, config.test_per_class)


def split_from_files(
    name: str,
    config: DataConfig,
    classes: list[str],
    metaclass: str,
    train: tuple[list, np.ndarray],
    test: tuple[list, np.ndarray],
    val: tuple[list, np.ndarray] | None = None,
    holdout_seed: int = 1234,
) -> FewShotSplit:
    """A few-shot split of a dataset given as files: (paths, labels 0..C-1) per split.

    Validation: ``val_per_class`` images per class, taken with a fixed seed (never the
    k-shot seed, so selection is comparable across searches) from the dataset's own
    validation split when it has one (<= 0: all of it), else carved from train; the k
    shots are sampled from the rest of train with ``data.seed``. ``test_per_class`` 0 keeps the whole official test split.
    Only the images a split uses are decoded.
    """
    from raysynth.data.images import load_images

    if len(classes) < 2:
        raise ConfigError(f"data.root: {name} has {len(classes)} class{'' if len(classes) == 1 else 'es'} "
                          f"({', '.join(classes) or 'none'}); a classifier needs at least 2")
    train_paths, train_labels = train
    if val is None:
        val_i, rest_i = stratified_holdout(train_labels, [config.val_per_class], holdout_seed)
        val = ([train_paths[i] for i in val_i], train_labels[val_i])
    else:
        rest_i = np.arange(len(train_labels))
        if config.val_per_class > 0:
            (keep,) = stratified_holdout(val[1], [config.val_per_class], holdout_seed)[:1]
            val = ([val[0][i] for i in keep], val[1][keep])
    shot_i = rest_i[sample_shots(train_labels[rest_i], config.shots, config.seed)]
    test_paths, test_labels = test
    if config.test_per_class > 0:
        (keep,) = stratified_holdout(test_labels, [config.test_per_class], holdout_seed)[:1]
        test_paths, test_labels = [test_paths[i] for i in keep], test_labels[keep]

    def images(paths, labels, part) -> ImageSet:
        array = load_images(list(paths), config.image_size, f"{name}-{part}")
        # uint8 (a copy: the decoding cache is a read-only memmap); batches become float
        # on the device that uses them
        return ImageSet(torch.from_numpy(np.array(array)), torch.from_numpy(np.asarray(labels, dtype=np.int64)))

    size = config.image_size
    return FewShotSplit(
        name=name,
        classes=classes,
        base_classes=[],
        base=ImageSet(torch.empty(0, 3, size, size), torch.empty(0, dtype=torch.long)),
        train=images([train_paths[i] for i in shot_i], train_labels[shot_i], "train"),
        val=images(*val, "val"),
        test=images(test_paths, test_labels, "test"),
        metaclass=metaclass,
        fingerprint=split_fingerprint(name, config) + fingerprint(config.root or "", length=6),
    )
