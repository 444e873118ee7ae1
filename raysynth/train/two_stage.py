"""UniCon's two-stage protocol (its Algorithm 1), the evaluation side.

Stage 1 (in :mod:`raysynth.train.loop`) trains ``n_contr`` encoders with the
representation objectives. After each epoch the reported accuracy is the
nearest-class-mean classifier on frozen features (the classifier SupCon's objective
optimises); after the last epoch ``n_classif`` linear classifiers per encoder are
trained on frozen features of augmented real shots (stage 2), and the reported
accuracy is the mean over the ``n_contr × n_classif`` classifiers, with its spread.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raysynth.config import TrainConfig
from raysynth.data.augment import random_affine
from raysynth.data.base import float_images
from raysynth.train.evaluate import Probes, encode, nearest_mean_accuracy, probe_accuracies

PROBE_VIEWS = 8  # augmented views of each real shot the frozen-feature classifiers see
# Seed of classifier j of encoder i: train.seed * 7907 + i * 131 + j. The strides are
# primes larger than any n_classif / n_contr in use, so no two classifiers of one
# search (nor of neighbouring train.seed values) share a seed.
SEED_STRIDE, ENCODER_STRIDE = 7907, 131


def train_probes(model: nn.Module, data, config: TrainConfig, run_index: int) -> list[dict]:
    """Stage 2: ``n_classif`` linear classifiers on frozen features of augmented real
    shots, each with its own seed (init and views)."""
    probes = []
    for j in range(config.n_classif):
        seed = config.seed * SEED_STRIDE + run_index * ENCODER_STRIDE + j
        g = torch.Generator().manual_seed(seed)
        views = torch.cat([random_affine(float_images(data.real_images), g) for _ in range(PROBE_VIEWS)])
        feats = encode(model, views)
        labels = data.real_labels.repeat(PROBE_VIEWS)
        torch.manual_seed(seed)
        head = nn.Linear(feats.shape[1], data.num_classes)
        optimizer = torch.optim.AdamW(head.parameters(), lr=config.probe_lr, weight_decay=config.weight_decay)
        for _ in range(config.probe_steps):
            loss = F.cross_entropy(head(feats), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        probes.append({k: v.detach().clone() for k, v in head.state_dict().items()})
    return probes


def evaluate_two_stage(
    models: list[nn.Module], data, config: TrainConfig, last: bool
) -> tuple[float, float | None, Probes | None]:
    """(validation accuracy, its spread, the trained classifiers) after an epoch of
    stage 1: nearest class mean before the last epoch, stage-2 classifiers after it."""
    if not last:
        accs = [
            nearest_mean_accuracy(m, data.real_images, data.real_labels, data.val_images, data.val_labels, data.num_classes)
            for m in models
        ]
        return sum(accs) / len(accs), None, None
    probes = [train_probes(m, data, config, i) for i, m in enumerate(models)]
    accs = probe_accuracies(models, probes, data.val_images, data.val_labels)
    return accs.mean().item(), (accs.std().item() if len(accs) > 1 else 0.0), probes
