"""Per-class weights of the synthetic data, parameterised so the search scales to 200 classes.

``per_class`` searches one weight per class (UniCon); ``grouped`` one weight per group of
classes; ``quality`` two coefficients of w_c = sigmoid(a + b·q_c). The last two need
something measured before the search — each class's fidelity q_c and/or the groups —
carried to the trials in a :class:`WeightContext`.

Fidelity is the model-based discrepancy of the ICML 2025 paper (Definition 3.1) between
a class's synthetic and real images, d_c = mean_{s∈S_c, u∈G_c} ‖h(s) − h(u)‖, with h the
frozen pretrained backbone's L2-normalised image features; q_c = −z-score of d_c across
classes, so q_c > 0 means "closer to its real images than the average class" and b > 0
makes the weight increase with fidelity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

WEIGHT_PARAM_KEYS = ("w", "w_group", "w_quality")


@dataclass
class WeightContext:
    quality: list[float] = field(default_factory=list)  # q_c per class (classes order)
    discrepancy: list[float] = field(default_factory=list)  # d_c per class
    groups: list[int] = field(default_factory=list)  # group of each class (grouped)

    def to_dict(self) -> dict[str, Any]:
        return {"quality": self.quality, "discrepancy": self.discrepancy, "groups": self.groups}


def quality_weights(a: float, b: float, quality: list[float]) -> list[float]:
    return [1.0 / (1.0 + math.exp(-(a + b * q))) for q in quality]


def class_weights(space, params: dict[str, Any], classes: list[str], context: WeightContext | None) -> list[float] | None:
    """The per-class weights of a trial's params, in ``classes`` order (None: no weights)."""
    if space is None:
        return None
    if space.kind == "per_class":
        w = params.get("w")
        if w is None:
            return None
        missing = [c for c in classes if c not in w]
        if missing:
            raise KeyError(f"trial params have no weight for classes {missing}")
        return [float(w[c]) for c in classes]
    if context is None:
        raise ValueError(f"class_weights of type {space.kind} need the measured WeightContext")
    if space.kind == "grouped":
        g = params["w_group"]
        return [float(g[f"g{group}"]) for group in context.groups]
    q = params["w_quality"]
    return quality_weights(float(q["a"]), float(q["b"]), context.quality)


def class_discrepancy(real: torch.Tensor, real_labels: torch.Tensor, syn: torch.Tensor, syn_class: torch.Tensor, num_classes: int) -> list[float]:
    """Definition 3.1 per class on features (N×d): mean ‖h(s) − h(u)‖ over real s and
    synthetic u of the class (NaN for a class without synthetic images)."""
    from raysynth.losses.bound import pairwise_distance

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
    from raysynth.losses import kmeans_partition

    labels, _ = kmeans_partition(F.normalize(class_means, dim=-1), min(groups, len(class_means)), niter=50, seed=seed)
    return labels.tolist()


def measure_context(config, space) -> WeightContext | None:
    """Everything the weight parameterisation needs, measured before the search."""
    w = space.weights
    if w is None or w.kind == "per_class":
        return None
    from raysynth.train.loop import encode
    from raysynth.train.task import build_model, cached_split, train_data

    split = cached_split(config)
    data = train_data(config, use_synthetic=True)
    model = build_model(config, split.num_classes, with_objectives=False)
    real = encode(model, data.real_images)
    syn = encode(model, data.syn_images)
    d = class_discrepancy(real, data.real_labels, syn, data.syn_class, split.num_classes)
    context = WeightContext(quality=fidelity_scores(d), discrepancy=d)
    if w.kind == "grouped":
        if w.by == "quality":
            context.groups = quality_groups(context.quality, w.groups)
        else:
            means = torch.stack([real[data.real_labels == c].mean(0) for c in range(split.num_classes)])
            context.groups = feature_groups(means, w.groups, seed=config.search.seed)
    return context
