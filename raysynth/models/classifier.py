"""The few-shot classifier: a LoRA-adapted open_clip vision tower, a head, and (for
contrastive objectives) a projection head.

LoRA is attached with peft to the vision tower only; the backbone's own weights stay
frozen, and only the adapters, the head and the projection train (DataDream / DISEF
recipe). The head is linear, or a fixed-prototype head (raysynth.losses.prototypes).
"""

from __future__ import annotations

import peft
import torch
from torch import nn

from raysynth.config import LoraConfig


class FewShotClassifier(nn.Module):
    def __init__(
        self,
        encoder: nn.Module,
        embed_dim: int,
        num_classes: int,
        head: nn.Module | None = None,
        projection_dim: int | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.embed_dim = embed_dim
        self.head = head if head is not None else nn.Linear(embed_dim, num_classes)
        # SupCon's projection g: an MLP whose L2-normalised output is what the loss sees
        self.projection = (
            nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, projection_dim))
            if projection_dim
            else None
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def forward(self, images: torch.Tensor, return_projection: bool = False):
        """Logits, or ``(logits, projection)`` (one call, so DDP sees every used parameter)."""
        features = self.features(images)
        logits = self.head(features)
        if not return_projection:
            return logits
        if self.projection is None:
            raise RuntimeError("this model has no projection head (no contrastive objective selected)")
        return logits, nn.functional.normalize(self.projection(features), dim=-1)


def attach_lora(visual: nn.Module, config: LoraConfig) -> nn.Module:
    """Wrap the vision tower with peft LoRA adapters; everything else is frozen.

    open_clip's attention is a fused ``nn.MultiheadAttention``; peft adapts it as a
    whole (its packed q/k/v input projection and its output projection).
    """
    lora = peft.LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
    )
    return peft.get_peft_model(visual, lora)


def build_classifier(
    clip_model: nn.Module,
    num_classes: int,
    lora: LoraConfig | None,
    head: nn.Module | None = None,
    projection_dim: int | None = None,
) -> FewShotClassifier:
    visual = clip_model.visual
    embed_dim = visual.output_dim
    if lora is not None:
        visual = attach_lora(visual, lora)
    else:
        for p in visual.parameters():
            p.requires_grad_(True)
    return FewShotClassifier(visual, embed_dim, num_classes, head=head, projection_dim=projection_dim)
