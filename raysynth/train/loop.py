"""The few-shot training loop: plain torch, testable and runnable without Ray.

One step draws ``batch_real`` of the few real shots (cycled) and ``batch_syn`` synthetic
images, both through the same random affine warp, and minimises

    CE(real) + syn_loss_weight * (1/B_syn) * sum_i w_{c_i} * CE_soft(syn_i)

An epoch is ``steps_per_epoch`` steps (the real set is tiny, so "a pass over the data"
would not be comparable between real-only and mixed training); after each epoch the
loop calls ``on_epoch_end`` with the validation accuracy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from raysynth.config import TrainConfig
from raysynth.data.augment import random_affine
from raysynth.losses import weighted_synthetic_ce

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    real_images: torch.Tensor
    real_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    num_classes: int
    syn_images: torch.Tensor | None = None
    syn_soft_labels: torch.Tensor | None = None
    syn_class: torch.Tensor | None = None

    @property
    def has_synthetic(self) -> bool:
        return self.syn_images is not None and len(self.syn_images) > 0


@dataclass
class EpochMetrics:
    epoch: int
    val_acc: float
    loss: float
    ce_real: float
    ce_syn: float
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> tuple[float, torch.Tensor]:
    """(accuracy, predictions) of ``model`` on a tensor dataset."""
    was_training = model.training
    model.eval()
    preds = torch.cat([model(images[i : i + batch_size]).argmax(-1) for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return (preds == labels).float().mean().item(), preds


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def train_few_shot(
    model: nn.Module,
    data: TrainData,
    config: TrainConfig,
    class_weights: torch.Tensor | None = None,
    on_epoch_end: Callable[[EpochMetrics, dict], None] | None = None,
    state: dict | None = None,
    rank: int = 0,
    eval_model: nn.Module | None = None,
) -> EpochMetrics | None:
    """Train ``model`` in place; returns the last epoch's metrics (None if no epoch ran).

    ``state`` (from a checkpoint: model, optimizer, epoch) resumes a run. ``on_epoch_end``
    receives the metrics and a function-free state dict to checkpoint. ``rank`` decorrelates
    batch sampling across data-parallel workers; ``eval_model`` is the unwrapped model.
    """
    eval_model = eval_model or model
    optimizer = build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * config.steps_per_epoch)
    first_epoch = 0
    if state is not None:
        eval_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first_epoch = state["epoch"]

    weights = class_weights if class_weights is not None else torch.ones(data.num_classes)
    g = torch.Generator().manual_seed(config.seed * 1000 + rank * 7919 + first_epoch)
    n_real = len(data.real_labels)
    metrics = None
    model.train()
    for epoch in range(first_epoch, config.epochs):
        start = time.perf_counter()
        totals = torch.zeros(3)
        for _ in range(config.steps_per_epoch):
            idx = torch.randint(0, n_real, (config.batch_real,), generator=g)
            images = random_affine(data.real_images[idx], g)
            labels = data.real_labels[idx]
            n_syn = 0
            if data.has_synthetic and config.syn_loss_weight > 0 and weights.sum() > 0:
                sidx = torch.randint(0, len(data.syn_images), (config.batch_syn,), generator=g)
                images = torch.cat([images, random_affine(data.syn_images[sidx], g)])
                n_syn = config.batch_syn
            logits = model(images)
            ce_real = F.cross_entropy(logits[: len(labels)], labels)
            if n_syn:
                ce_syn = weighted_synthetic_ce(
                    logits[len(labels) :], data.syn_soft_labels[sidx], data.syn_class[sidx], weights
                )
            else:
                ce_syn = torch.zeros(())
            loss = ce_real + config.syn_loss_weight * ce_syn
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            totals += torch.stack([loss.detach(), ce_real.detach(), ce_syn.detach()])
        totals /= config.steps_per_epoch
        val_acc, _ = evaluate(eval_model, data.val_images, data.val_labels)
        metrics = EpochMetrics(epoch + 1, val_acc, *totals.tolist(), time.perf_counter() - start)
        log.debug("epoch %d val_acc %.4f loss %.4f (%.1f s)", epoch + 1, val_acc, metrics.loss, metrics.seconds)
        if on_epoch_end is not None:
            on_epoch_end(
                metrics,
                {
                    "model": eval_model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch + 1,
                },
            )
    return metrics
