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


class ZeroShotHead(nn.Module):
    """Cosine classifier initialised from class text embeddings (CLIP's zero-shot
    classifier), then fine-tuned: ``scale * normalize(f) @ normalize(W).T``."""

    def __init__(self, text_embeddings: torch.Tensor, logit_scale: float = 100.0):
        super().__init__()
        self.weight = nn.Parameter(nn.functional.normalize(text_embeddings.detach().float(), dim=-1).clone())
        self.logit_scale = logit_scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        f = nn.functional.normalize(features, dim=-1)
        return self.logit_scale * f @ nn.functional.normalize(self.weight, dim=-1).T


class FewShotClassifier(nn.Module):
    """Images enter and outputs leave on the caller's device (CPU batches); the model
    runs on its own device, with bf16 autocast and channels-last on CUDA."""

    def __init__(
        self,
        encoder: nn.Module,
        embed_dim: int,
        num_classes: int,
        head: nn.Module | None = None,
        projection_dim: int | None = None,
        pixel_mean: tuple[float, ...] | None = None,
        pixel_std: tuple[float, ...] | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.embed_dim = embed_dim
        self.head = head if head is not None else nn.Linear(embed_dim, num_classes)
        self.normalize = pixel_mean is not None
        if self.normalize:  # not persistent: checkpoints hold only learned weights
            self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1), persistent=False)
        # SupCon's projection g: an MLP whose L2-normalised output is what the loss sees
        self.projection = (
            nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, projection_dim))
            if projection_dim
            else None
        )

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        device = self.head_device()
        x = images.to(device, non_blocking=True)
        if self.normalize:
            x = (x - self.pixel_mean) / self.pixel_std
        if device.type != "cuda":
            return self.encoder(x)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return self.encoder(x).float()

    def head_device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self._encode(images).to(images.device)

    def forward(self, images: torch.Tensor, return_projection: bool = False):
        """Logits, or ``(logits, projection)`` (one call, so DDP sees every used parameter)."""
        features = self._encode(images)
        logits = self.head(features).to(images.device)
        if not return_projection:
            return logits
        if self.projection is None:
            raise RuntimeError("this model has no projection head (no contrastive objective selected)")
        return logits, nn.functional.normalize(self.projection(features), dim=-1).to(images.device)


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
    normalize: bool = False,
) -> FewShotClassifier:
    visual = clip_model.visual
    embed_dim = visual.output_dim
    mean = std = None
    if normalize:
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        mean = tuple(getattr(visual, "image_mean", None) or OPENAI_DATASET_MEAN)
        std = tuple(getattr(visual, "image_std", None) or OPENAI_DATASET_STD)
    if lora is not None:
        visual = attach_lora(visual, lora)
    else:
        for p in visual.parameters():
            p.requires_grad_(True)
    return FewShotClassifier(visual, embed_dim, num_classes, head=head, projection_dim=projection_dim, pixel_mean=mean, pixel_std=std)


@torch.no_grad()
def zero_shot_head(clip_model: nn.Module, model_name: str, classes: list[str], metaclass: str) -> ZeroShotHead:
    """A :class:`ZeroShotHead` from the text tower's embeddings of the class prompts."""
    import open_clip

    from raysynth.models.prompts import class_prompts

    if not hasattr(clip_model, "encode_text"):
        raise ValueError(f"model.head: 'zero_shot' needs a text tower; {model_name} has none")
    tokens = open_clip.get_tokenizer(model_name)(class_prompts(classes, metaclass))
    was_training = clip_model.training
    clip_model.eval()
    text = clip_model.encode_text(tokens)
    clip_model.train(was_training)
    scale = float(clip_model.logit_scale.exp()) if hasattr(clip_model, "logit_scale") else 100.0
    return ZeroShotHead(text, logit_scale=min(scale, 100.0))
