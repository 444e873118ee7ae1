"""CLIP filtering of synthetic images (Diff-Mix, DataDream, DISEF).

Every generated image is scored once, at generation time, by an open_clip model
against one prompt per class; the scores are stored in the pool's manifest:

- ``clip_score``: the softmax probability CLIP gives the target class;
- ``clip_pred``: the class CLIP prefers;
- ``clip_margin``: target logit minus the best other class's logit.

The rules that use these scores are applied when a trial loads the pool
(:mod:`raysynth.pool.filters`), so thresholds can be searched without generating again.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from raysynth.models.backbone import create_model
from raysynth.models.prompts import class_prompts


class ClipScorer:
    """Loads an open_clip model once; scores batches of images against class prompts."""

    def __init__(self, model: str, pretrained: str | None, classes: list[str], metaclass: str, device: str = "cpu"):
        import open_clip

        self.device = device
        self.model = create_model(model, pretrained).to(device).eval()
        tokenizer = open_clip.get_tokenizer(model)  # the BPE vocabulary ships with open_clip
        with torch.no_grad():
            text = self.model.encode_text(tokenizer(class_prompts(classes, metaclass)).to(device))
        self.text = F.normalize(text.float(), dim=-1)
        self.image_size = self.model.visual.image_size
        self.image_size = self.image_size[0] if isinstance(self.image_size, (tuple, list)) else self.image_size
        mean, std = getattr(self.model.visual, "image_mean", None), getattr(self.model.visual, "image_std", None)
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        self.mean = torch.tensor(mean or OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(std or OPENAI_DATASET_STD).view(1, 3, 1, 1)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """images N x 3 x H x W in [0, 1] -> N x C logits (100 x cosine, CLIP's scale)."""
        x = F.interpolate(images.float(), size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = ((x - self.mean) / self.std).to(self.device)
        features = F.normalize(self.model.encode_image(x).float(), dim=-1)
        return 100.0 * features @ self.text.T

    def score(self, images: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
        return scores_from_logits(self.logits(images).cpu(), targets)


def scores_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
    """The manifest columns for N x C logits and the N target classes."""
    probs = logits.softmax(-1)
    rows = torch.arange(len(targets))
    target_logit = logits[rows, targets]
    others = logits.clone()
    others[rows, targets] = float("-inf")
    return {
        "clip_score": probs[rows, targets].numpy().astype(np.float32),
        "clip_pred": logits.argmax(-1).numpy().astype(np.int64),
        "clip_margin": (target_logit - others.max(-1).values).numpy().astype(np.float32),
    }
