"""The few-shot classifier: a LoRA-adapted open_clip vision tower and a linear head.

LoRA is attached with peft to the vision tower only; the backbone's own weights stay
frozen, and only the adapters and the head train (DataDream / DISEF recipe).
"""

from __future__ import annotations

import peft
import torch
from torch import nn

from raysynth.config import LoraConfig


class FewShotClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, embed_dim: int, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(embed_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


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


def build_classifier(clip_model: nn.Module, num_classes: int, lora: LoraConfig | None) -> FewShotClassifier:
    visual = clip_model.visual
    embed_dim = visual.output_dim
    if lora is not None:
        visual = attach_lora(visual, lora)
    else:
        for p in visual.parameters():
            p.requires_grad_(True)
    return FewShotClassifier(visual, embed_dim, num_classes)
