"""Scoring trained models: accuracy, predictions, frozen features, confusion matrices.

Two kinds of trained classifier: a model's own head (joint protocol), or the linear
classifiers trained on its frozen features (``probes``, the two-stage protocol: one list
of classifier state dicts per model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raysynth.data.base import float_images

Probes = list[list[dict]]  # per model: its frozen-feature classifiers' state dicts


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def as_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch as the model takes it: on its device, float in [0, 1] (uint8 images are
    converted there, so stored images can stay uint8)."""
    return float_images(images.to(device, non_blocking=True))


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> tuple[float, torch.Tensor]:
    """(accuracy, predictions) of ``model`` on a tensor dataset."""
    was_training = model.training
    model.eval()
    device = device_of(model)
    preds = torch.cat([model(as_input(images[i : i + batch_size], device)).argmax(-1).cpu() for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return (preds == labels).float().mean().item(), preds


@torch.no_grad()
def encode(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Frozen encoder features of a FewShotClassifier (eval mode)."""
    was_training = model.training
    model.eval()
    device = device_of(model)
    out = torch.cat([model.features(as_input(images[i : i + batch_size], device)).cpu() for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return out


@torch.no_grad()
def nearest_mean_accuracy(model: nn.Module, real_images, real_labels, images, labels, num_classes: int) -> float:
    """Accuracy of the nearest-class-mean classifier (class means of the real shots'
    frozen features) on ``images``."""
    from raysynth.losses import class_mean_prototypes

    means = class_mean_prototypes(encode(model, real_images), real_labels, num_classes)
    feats = F.normalize(encode(model, images), dim=-1)
    return ((feats @ means.T).argmax(1) == labels).float().mean().item()


@torch.no_grad()
def probe_accuracies(models: list[nn.Module], probes: Probes, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accuracy of every (encoder, classifier) pair of the two-stage protocol."""
    accs = []
    for model, heads in zip(models, probes):
        feats = encode(model, images)
        for state in heads:
            logits = F.linear(feats, state["weight"], state["bias"])
            accs.append((logits.argmax(1) == labels).float().mean())
    return torch.stack(accs)


def model_accuracies(
    models: nn.Module | list[nn.Module], images: torch.Tensor, labels: torch.Tensor, probes: Probes | None = None
) -> list[float]:
    """Accuracy of every trained classifier on a held-out split: each model's head
    (joint), or every frozen-feature classifier (two-stage: ``probes``)."""
    models = models if isinstance(models, list) else [models]
    if probes and any(probes):
        return probe_accuracies(models, probes, images, labels).tolist()
    return [evaluate(m, images, labels)[0] for m in models]


def model_accuracy(models, images: torch.Tensor, labels: torch.Tensor, probes: Probes | None = None) -> float:
    """Mean of :func:`model_accuracies`."""
    accs = model_accuracies(models, images, labels, probes)
    return sum(accs) / len(accs)


@torch.no_grad()
def model_predictions(model: nn.Module, images: torch.Tensor, probes: list[dict] | None = None) -> torch.Tensor:
    """Predictions of a trained model: its first frozen-feature classifier, else its head."""
    if probes:
        return F.linear(encode(model, images), probes[0]["weight"], probes[0]["bias"]).argmax(1)
    return evaluate(model, images, torch.zeros(len(images), dtype=torch.long))[1]


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> list[list[int]]:
    m = torch.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return m.view(num_classes, num_classes).tolist()
