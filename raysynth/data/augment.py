"""Random affine warps shared by training augmentation and the morph generator.

Using the same warp (bilinear resampling) on real training images and on synthetic
ones matters: otherwise resampling blur alone tells a classifier which images are
synthetic, and it learns to ignore them — poisoned or faithful alike.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Digits stay legible under +-15 degrees, +-10 % scale and a shift of 8 % of the side.
MAX_ROTATION_DEG = 15.0
MAX_SCALE = 0.10
MAX_SHIFT = 0.08


def random_affine_matrices(n: int, generator: torch.Generator) -> torch.Tensor:
    """n x 2 x 3 matrices for ``F.affine_grid`` (normalised coordinates)."""
    u = torch.rand(n, 4, generator=generator) * 2 - 1
    angle = math.radians(MAX_ROTATION_DEG) * u[:, 0]
    scale = 1.0 + MAX_SCALE * u[:, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    shift = 2 * MAX_SHIFT * u[:, 2:]
    return torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )


def warp(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(matrices, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


def random_affine(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # drawn on the CPU generator (the same batches on any device), warped where the images are
    return warp(images, random_affine_matrices(len(images), generator).to(images.device))
