"""Pretraining of the tiny backbone on the dataset's base classes, cached by config.

The embedded default has no hub to download CLIP weights from, so ``raysynth pretrain``
trains the vision tower of ``raysynth-tiny`` (plus a throw-away linear head) with
cross-entropy on the base classes (digits 0-4). The novel classes are never seen. The
weights are cached under ``RAYSYNTH_HOME/weights`` keyed by everything that shaped them.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from raysynth.atomic import atomic_file
from raysynth.devices import work_device
from raysynth.config import ModelConfig
from raysynth.data.augment import random_affine
from raysynth.data.base import FewShotSplit
from raysynth.home import fetch, fingerprint, publish, raysynth_home
from raysynth.models.backbone import create_model, model_config
from raysynth.models.classifier import build_classifier
from raysynth.train.evaluate import as_input, evaluate

log = logging.getLogger(__name__)


def pretrained_path(split: FewShotSplit, config: ModelConfig, home: Path | None = None) -> Path:
    key = fingerprint("pretrain-v2", config.name, model_config(config.name), vars(config.pretrain), split.name, split.base_classes)
    return (home or raysynth_home()) / "weights" / f"{config.name}-{split.name}-{key}.pt"


def pretrain_backbone(split: FewShotSplit, config: ModelConfig, seed: int = 0, force: bool = False) -> Path:
    """Return the cached pretrained weights, training them first if missing."""
    path = pretrained_path(split, config)
    if not force and fetch(path):
        log.info("backbone %s: cached weights %s", config.name, path)
        return path

    torch.manual_seed(seed)
    device = work_device()  # the GPU Ray gave this task, if torch sees it
    clip = create_model(config.name)
    model = build_classifier(clip, len(split.base_classes), lora=None).to(device)
    cfg = config.pretrain
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.05)
    warmup = max(1, cfg.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / cfg.steps)).item()),
    )
    # hold out 10% of the base images to report a meaningful accuracy
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(split.base), generator=g)
    n_hold = len(perm) // 10
    hold, fit = split.base.subset(perm[:n_hold]), split.base.subset(perm[n_hold:])

    log.info("pretraining %s on %d base images of %s for %d steps", config.name, len(fit), split.name, cfg.steps)
    start = time.perf_counter()
    model.train()
    for step in range(cfg.steps):
        idx = torch.randint(0, len(fit), (cfg.batch_size,), generator=g)
        images = random_affine(as_input(fit.images[idx], device), g)
        loss = F.cross_entropy(model(images), fit.labels[idx].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 100 == 0 or step + 1 == cfg.steps:
            acc, _ = evaluate(model, hold.images, hold.labels)
            elapsed = time.perf_counter() - start
            log.info(
                "pretrain step %d/%d loss %.3f held-out acc %.3f (%.1f steps/s, %.0f s)",
                step + 1, cfg.steps, loss.item(), acc, (step + 1) / elapsed, elapsed,
            )

    path.parent.mkdir(parents=True, exist_ok=True)
    # the whole CLIP model (text tower untouched), so it loads like any open_clip checkpoint
    atomic_file(path, lambda tmp: torch.save({k: v.cpu() for k, v in clip.state_dict().items()}, tmp))
    publish(path)  # to a remote home, for the trials on every node
    return path
