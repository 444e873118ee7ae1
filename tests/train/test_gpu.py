"""On a CUDA device (``-m gpu``; skipped by default and where torch sees no GPU): the
classifier a trial trains, on the GPU and in bf16 there."""

import pytest
import torch

from raysynth.config import LoraConfig, TrainConfig
from raysynth.models.backbone import create_model
from raysynth.models.classifier import build_classifier
from raysynth.train.evaluate import device_of
from raysynth.train.loop import TrainData, train_few_shot

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_lora_classifier_trains_on_the_gpu_in_bf16():
    """On CUDA the encoder's forward runs under bf16 autocast (with channels-last inputs),
    the LoRA weights and the head stay float32 and on the GPU, and the loss falls."""
    torch.manual_seed(0)
    lora = LoraConfig(r=4, alpha=8.0, dropout=0.0, target_modules=["attn"])
    model = build_classifier(create_model("raysynth-tiny"), 2, lora, normalize=False).to("cuda")
    seen = []
    model.encoder.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype) if model.training else None)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(32) % 2
    images = torch.rand(32, 3, 32, 32, generator=g) * 0.2
    images[labels == 1, :, :16] += 0.8
    losses = []
    config = TrainConfig(epochs=3, steps_per_epoch=10, batch_real=16, lr=1e-2)
    train_few_shot(model, TrainData(images, labels, images, labels, 2), config, on_epoch_end=lambda m, _s: losses.append(m.loss))
    assert set(seen) == {torch.bfloat16}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 and p.is_cuda for p in trainable)
    assert device_of(model).type == "cuda" and losses[-1] < losses[0]
