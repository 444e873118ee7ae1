"""Training throughput of LoRA ViT-B/16 through raysynth's loop vs a plain loop, one run.

No weights can be downloaded here, so the real architecture (open_clip ViT-B-16,
224 px) is randomly initialised; throughput does not depend on the weights. Both sides
train the same classifier (peft LoRA r=16, alpha=32 on the fused attention, zero-shot-
shaped linear head) on the same number of real + synthetic images per step:

- plain: sample a batch, forward, cross-entropy, backward, AdamW step;
- raysynth: ``train_few_shot`` (random affine augmentation, Diff-Mix soft labels, the
  objective registry, per-term logging, a validation pass per epoch).

Prints images/s of each and the ratio raysynth / plain (goal >= 0.9). On CUDA raysynth's
classifier runs its encoder under bf16 autocast with channels-last inputs; the plain loop
runs fp32 unless --plain-bf16 (benchmarks/gpu.py compares both in bf16).

    .venv/bin/python benchmarks/train_throughput.py [--steps 6] [--batch 8] [--model ViT-B-16]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8, help="images per step (half real, half synthetic)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--plain-bf16", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    plain, ours = measure(args.model, args.steps, args.batch, args.size, device, args.plain_bf16)
    half = args.batch // 2
    print(f"\n{args.model} LoRA r=16 (random init), {args.size} px, batch {args.batch} ({half} real + {half} synthetic), "
          f"{args.steps} steps, {device} ({torch.get_num_threads()} threads)")
    print(f"plain open_clip loop: {plain:.2f} images/s")
    print(f"raysynth train_few_shot: {ours:.2f} images/s (includes augmentation and one validation pass of 8 images)")
    print(f"ratio raysynth / plain: {ours / plain:.2f} (goal >= 0.9)")


def measure(model_name: str, steps: int, batch: int, size: int, device: str, plain_bf16: bool) -> tuple[float, float]:
    """Images/s of (the plain loop, raysynth's train_few_shot) on ``device``, each after a
    warm-up step."""
    from raysynth.config import LoraConfig, TrainConfig
    from raysynth.losses import parse_loss
    from raysynth.models.backbone import create_model
    from raysynth.models.classifier import build_classifier
    from raysynth.train.loop import TrainData, train_few_shot

    classes, half = 10, batch // 2
    lora = LoraConfig(r=16, alpha=32.0, dropout=0.0, target_modules=["attn"])

    def classifier():
        torch.manual_seed(0)
        return build_classifier(create_model(model_name), classes, lora, normalize=True).to(device)

    g = torch.Generator().manual_seed(0)
    n = 64
    real, syn = torch.rand(n, 3, size, size, generator=g), torch.rand(n, 3, size, size, generator=g)
    labels = torch.randint(classes, (n,), generator=g)

    # ---- plain loop
    model = classifier()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def plain_step():
        idx = torch.randint(n, (half,), generator=g)
        x = torch.cat([real[idx], syn[idx]]).to(device)
        y = torch.cat([labels[idx], labels[idx]]).to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=plain_bf16 and device == "cuda"):
            logits = model.head(model.encoder((x - model.pixel_mean) / model.pixel_std).float())
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    plain_step()  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        plain_step()
    sync(device)
    plain = steps * batch / (time.perf_counter() - start)
    model = opt = None  # freed before the second model is built (GPU memory)

    # ---- raysynth's loop (one warm-up epoch of one step, then the timed epoch)
    model = classifier()
    data = TrainData(
        real_images=real, real_labels=labels, val_images=real[:8], val_labels=labels[:8], num_classes=classes,
        syn_images=syn, syn_soft_labels=F.one_hot(labels, classes).float(), syn_class=labels,
    )
    objectives = parse_loss({"ce": {}})
    warm = TrainConfig(epochs=1, steps_per_epoch=1, batch_real=half, batch_syn=half)
    train_few_shot(model, data, warm, objectives=objectives)
    timed = TrainConfig(epochs=1, steps_per_epoch=steps, batch_real=half, batch_syn=half)
    sync(device)
    start = time.perf_counter()
    train_few_shot(model, data, timed, objectives=objectives)
    sync(device)
    ours = steps * batch / (time.perf_counter() - start)
    return plain, ours


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
