import torch

from raysynth.config import LoraConfig, ModelConfig
from raysynth.models.backbone import create_model
from raysynth.models.classifier import build_classifier


def _classifier(lora=LoraConfig()):
    torch.manual_seed(0)
    clip = create_model(ModelConfig().name)
    return build_classifier(clip, num_classes=5, lora=lora)


def test_only_lora_and_head_train():
    model = _classifier()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "nothing to train"
    assert all("lora_" in n or n.startswith("head.") for n in trainable)
    assert any("lora_" in n and ".attn." in n for n in trainable)  # fused attention adapted
    assert any("c_fc" in n for n in trainable) and "head.weight" in trainable
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 5, (8,))
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for n, p in model.named_parameters():
        if n in frozen_before:
            # peft adapts nn.MultiheadAttention by merging LoRA into in_proj_weight for the
            # forward pass and unmerging after: rounding (~1e-7), never a gradient step
            assert torch.allclose(p, frozen_before[n], atol=1e-6), f"frozen {n} changed"
    assert any(not torch.equal(dict(model.named_parameters())[n], v) for n, v in lora_before.items())


def test_lora_starts_as_identity():
    """LoRA's B is zero at init: the adapted encoder equals the pretrained one."""
    torch.manual_seed(0)
    clip = create_model(ModelConfig().name)
    x = torch.rand(4, 3, 32, 32)
    clip.eval()
    with torch.no_grad():
        plain = clip.visual(x)
    model = build_classifier(clip, 5, LoraConfig())
    model.eval()
    with torch.no_grad():
        adapted = model.features(x)
    assert torch.allclose(plain, adapted, atol=1e-5)
