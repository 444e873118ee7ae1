"""CLIP filtering of synthetic images (Diff-Mix, DataDream, DISEF).

Every generated image is scored once, at generation time, by an open_clip model
against one prompt per class; the scores are stored in the pool's manifest:

- ``clip_score``: the softmax probability CLIP gives the target class;
- ``clip_pred``: the class CLIP prefers;
- ``clip_margin``: target logit minus the best other class's logit.

The rules are applied when a trial loads the pool, so thresholds can be searched
without generating again: ``bottom`` drops the lowest ``fraction`` of each class by
``clip_score`` (the confidence filter), ``mismatch`` drops images CLIP assigns to
another class (the classification filter).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from raysynth.config import ConfigError

PROMPT = "a photo of a {name}, a type of {metaclass}."


def class_prompts(classes: list[str], metaclass: str) -> list[str]:
    return [PROMPT.format(name=c, metaclass=metaclass or "object") for c in classes]


class ClipScorer:
    """Loads an open_clip model once; scores batches of images against class prompts."""

    def __init__(self, model: str, pretrained: str | None, classes: list[str], metaclass: str, device: str = "cpu"):
        import open_clip

        from raysynth.models.backbone import create_model

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


def keep_mask(manifest: pd.DataFrame, rule: str, fraction: float = 0.2) -> np.ndarray:
    """Boolean mask of the images a filter rule keeps."""
    n = len(manifest)
    if rule == "none":
        return np.ones(n, dtype=bool)
    if "clip_score" not in manifest:
        raise ConfigError(f"pool.filter: '{rule}' needs CLIP scores, but the pool has none (set pool.clip_model)")
    if rule == "mismatch":
        return (manifest["clip_pred"] == manifest["target_class"]).to_numpy()
    if rule == "bottom":
        keep = np.ones(n, dtype=bool)
        for _, rows in manifest.groupby("target_class").indices.items():
            drop = int(np.floor(fraction * len(rows)))
            if drop:
                # stable order: ties dropped by position, the same on every load
                order = np.argsort(manifest["clip_score"].to_numpy()[rows], kind="stable")
                keep[rows[order[:drop]]] = False
        return keep
    raise ConfigError(f"pool.filter: must be 'none', 'bottom' or 'mismatch', got '{rule}'")
