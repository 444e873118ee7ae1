"""scikit-learn's bundled digits (1,797 8x8 images): the embedded default, no download.

Base classes 0-4 pretrain the backbone; novel classes 5-9 are the few-shot task.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from raysynth.config import DataConfig
from raysynth.data.base import (
    FewShotSplit,
    ImageSet,
    register_dataset,
    sample_shots,
    split_fingerprint,
    stratified_holdout,
)

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
BASE = [0, 1, 2, 3, 4]
NOVEL = [5, 6, 7, 8, 9]
# The validation/test cut never depends on the k-shot seed: selection and the final test
# must be comparable across searches.
HOLDOUT_SEED = 1234


def _to_images(flat: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(flat.astype(np.float32) / 16.0).view(-1, 1, 8, 8)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


@register_dataset("digits", has_base_classes=True)
def load_digits_split(config: DataConfig) -> FewShotSplit:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    labels = bunch.target.astype(np.int64)
    images = _to_images(bunch.data, config.image_size)

    base_idx = np.flatnonzero(np.isin(labels, BASE))
    novel_idx = np.flatnonzero(np.isin(labels, NOVEL))
    novel_labels = np.searchsorted(NOVEL, labels[novel_idx])  # 5..9 -> 0..4

    val_i, test_i, rest_i = stratified_holdout(
        novel_labels, [config.val_per_class, config.test_per_class], HOLDOUT_SEED
    )
    shot_i = rest_i[sample_shots(novel_labels[rest_i], config.shots, config.seed)]

    def novel(i: np.ndarray) -> ImageSet:
        return ImageSet(images[novel_idx[i]], torch.from_numpy(novel_labels[i]))

    return FewShotSplit(
        name="digits",
        classes=[NAMES[c] for c in NOVEL],
        base_classes=[NAMES[c] for c in BASE],
        base=ImageSet(images[base_idx], torch.from_numpy(labels[base_idx])),
        train=novel(shot_i),
        val=novel(val_i),
        test=novel(test_i),
        metaclass="digit",
        fingerprint=split_fingerprint("digits", config),
        prior=novel(rest_i),
    )
