"""Cross-entropy on synthetic images with soft labels and per-class weights.

Each synthetic sample's loss is multiplied by the weight w_c of the class it was
generated for (UniCon's per-class trust in the generator). The sum is divided by the
number of synthetic samples, not by the sum of weights, so w_c = 0 removes a class's
synthetic images from the objective instead of re-scaling the others.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, soft_targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy against a probability vector (N,)."""
    return -(soft_targets * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def weighted_synthetic_ce(
    logits: torch.Tensor,
    soft_targets: torch.Tensor,
    target_class: torch.Tensor,
    class_weights: torch.Tensor,
) -> torch.Tensor:
    per_sample = soft_cross_entropy(logits, soft_targets) * class_weights[target_class]
    return per_sample.sum() / max(len(per_sample), 1)
