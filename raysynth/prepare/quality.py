"""Per-class quality, measured once before a search for the ``grouped`` and ``quality``
weightings.

Fidelity is the model-based discrepancy of the ICML 2025 paper (Definition 3.1) between
a class's synthetic and real images, d_c = mean_{s∈S_c, u∈G_c} ‖h(s) − h(u)‖, with h the
frozen pretrained backbone's L2-normalised image features; q_c = −z-score of d_c across
classes, so q_c > 0 means "closer to its real images than the average class".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raysynth.devices import work_device
from raysynth.config import Config
from raysynth.context import QualityRequest, RunContext, WeightContext
from raysynth.losses import kmeans_partition
from raysynth.losses.bound import pairwise_distance
from raysynth.train.data import train_data
from raysynth.train.evaluate import encode
from raysynth.train.model import build_model


def measure_class_quality(config: Config, context: RunContext, request: QualityRequest = QualityRequest()) -> WeightContext:
    """q_c of every class on the frozen backbone's features; with ``request.groups`` > 0
    also a group per class: quantiles of q (``by='quality'``) or k-means of the class-mean
    features (``by='features'``)."""
    data = train_data(config, context, [], use_synthetic=True)
    model = build_model(config, context, with_objectives=False).to(work_device())
    real = encode(model, data.real_images)
    syn = encode(model, data.syn_images)
    d = class_discrepancy(real, data.real_labels, syn, data.syn_class, data.num_classes)
    measured = WeightContext(quality=fidelity_scores(d), discrepancy=d)
    if request.groups and request.by == "quality":
        measured.groups = quality_groups(measured.quality, request.groups)
    elif request.groups:
        means = torch.stack([real[data.real_labels == c].mean(0) for c in range(data.num_classes)])
        measured.groups = feature_groups(means, request.groups, seed=config.search.seed)
    return measured


def class_discrepancy(real: torch.Tensor, real_labels: torch.Tensor, syn: torch.Tensor, syn_class: torch.Tensor, num_classes: int) -> list[float]:
    """Definition 3.1 per class on features (N×d): mean ‖h(s) − h(u)‖ over real s and
    synthetic u of the class (NaN for a class without synthetic images)."""
    real, syn = F.normalize(real, dim=-1), F.normalize(syn, dim=-1)
    out = []
    for c in range(num_classes):
        s, u = real[real_labels == c], syn[syn_class == c]
        out.append(float(pairwise_distance(s, u).mean()) if len(s) and len(u) else float("nan"))
    return out


def fidelity_scores(discrepancy: list[float]) -> list[float]:
    """q_c = −(d_c − mean d) / std d (0 for every class when all d_c are equal)."""
    d = torch.tensor(discrepancy, dtype=torch.float64)
    finite = torch.isfinite(d)
    mean = d[finite].mean()
    std = d[finite].std() if finite.sum() > 1 else torch.tensor(0.0, dtype=torch.float64)
    q = torch.where(finite, -(d - mean) / (std if std > 0 else 1.0), torch.zeros_like(d))
    return [float(v) for v in q]


def quality_groups(quality: list[float], groups: int) -> list[int]:
    """Quantile groups of q: group 0 holds the least faithful classes."""
    order = sorted(range(len(quality)), key=lambda c: quality[c])
    out = [0] * len(quality)
    for rank, c in enumerate(order):
        out[c] = min(groups - 1, rank * groups // len(quality))
    return out


def feature_groups(class_means: torch.Tensor, groups: int, seed: int = 0) -> list[int]:
    """k-means (FAISS) of the class-mean features into ``groups`` groups."""
    labels, _ = kmeans_partition(F.normalize(class_means, dim=-1), min(groups, len(class_means)), niter=50, seed=seed)
    return labels.tolist()
