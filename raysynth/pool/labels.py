"""Diff-Mix soft labels (Diff-Mix, CVPR 2024, Sec. 3.3).

An image translated from reference class j toward target class i with strength s gets
``s**gamma`` on i and ``1 - s**gamma`` on j. gamma < 1 puts more mass on the target
(the paper's gamma in {0.1, 0.3, 0.5, 1}). When i == j (Diff-Aug) the label is one-hot.
"""

from __future__ import annotations

import torch


def diffmix_soft_labels(
    target: torch.Tensor,
    reference: torch.Tensor,
    strength: torch.Tensor | float,
    gamma: float,
    num_classes: int,
) -> torch.Tensor:
    strength = torch.as_tensor(strength, dtype=torch.float32).expand(target.shape)
    on_target = strength.pow(gamma)
    labels = torch.zeros(len(target), num_classes)
    labels.scatter_add_(1, reference.view(-1, 1), (1.0 - on_target).view(-1, 1))
    labels.scatter_add_(1, target.view(-1, 1), on_target.view(-1, 1))
    return labels
