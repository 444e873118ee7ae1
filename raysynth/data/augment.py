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


# ---------------------------------------------------------------- DataDream's pipeline
# DataDream's training transform (ExplainableML/DataDream classify/data.py get_transforms,
# also the ICML 2025 bound loss's, its Appendix B): RandAugment (torchvision's defaults: 2
# ops, magnitude 9), random resized crop (scale 0.25-1), horizontal flip, colour jitter
# (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1) with p 0.8, grayscale p 0.2,
# Gaussian blur p 0.2 (radius 0.1-2, classify/util_data.py GaussianBlur), solarization
# p 0.2. Every random parameter is drawn on the CPU generator, so the same batches come
# out on any device. (torchvision's ColorJitter applies its four changes in a random
# order; here brightness, contrast, saturation, hue.)
CROP_SCALE, CROP_RATIO = (0.25, 1.0), (3 / 4, 4 / 3)
P_FLIP, P_JITTER, P_GRAY, P_BLUR, P_SOLARIZE = 0.5, 0.8, 0.2, 0.2, 0.2
JITTER = (0.4, 0.4, 0.2)  # brightness, contrast, saturation factors in [1 - j, 1 + j]
HUE = 0.1  # hue shift in [-0.1, 0.1] of a turn
BLUR_SIGMA = (0.1, 2.0)
RANDAUGMENT_OPS, RANDAUGMENT_MAGNITUDE = 2, 9


def rand_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """torchvision's RandAugment (2 ops, magnitude 9), its own ops drawn per image; its
    randomness is seeded from ``generator`` (reproducible batches)."""
    from torchvision.transforms import v2

    op = v2.RandAugment(num_ops=RANDAUGMENT_OPS, magnitude=RANDAUGMENT_MAGNITUDE)
    seed = int(torch.randint(2**62, (1,), generator=generator))
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8)  # as DataDream: on 8-bit images
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = torch.stack([op(image) for image in pixels])
    return out.to(images.dtype) / 255


def datadream_augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """DataDream's augmentations of a float batch (N x 3 x H x W in [0, 1])."""
    n, _, h, w = images.shape
    images = rand_augment(images, generator)
    u = torch.rand(n, 13, generator=generator)
    # random resized crop + horizontal flip, as one affine resampling per image
    area = CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * u[:, 0]
    log_ratio = math.log(CROP_RATIO[0]) + (math.log(CROP_RATIO[1]) - math.log(CROP_RATIO[0])) * u[:, 1]
    ratio = torch.exp(log_ratio)
    sx, sy = torch.sqrt(area * ratio).clamp(max=1.0), torch.sqrt(area / ratio).clamp(max=1.0)
    tx, ty = (1 - sx) * (2 * u[:, 2] - 1), (1 - sy) * (2 * u[:, 3] - 1)
    flip = torch.where(u[:, 4] < P_FLIP, -1.0, 1.0)
    zero = torch.zeros(n)
    matrices = torch.stack([torch.stack([sx * flip, zero, tx], 1), torch.stack([zero, sy, ty], 1)], 1)
    grid = F.affine_grid(matrices.to(images.device), list(images.shape), align_corners=False)
    x = F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)

    def per_image(values: torch.Tensor) -> torch.Tensor:
        return values.to(x.device).view(n, 1, 1, 1)

    # colour jitter (brightness, contrast, saturation, hue), with probability P_JITTER
    factors = 1 + torch.tensor(JITTER) * (2 * u[:, 6:9] - 1)
    jittered = (x * per_image(factors[:, 0])).clamp(0, 1)
    mean = _luma(jittered).mean(dim=(2, 3), keepdim=True)
    jittered = ((jittered - mean) * per_image(factors[:, 1]) + mean).clamp(0, 1)
    jittered = ((jittered - _luma(jittered)) * per_image(factors[:, 2]) + _luma(jittered)).clamp(0, 1)
    jittered = shift_hue(jittered, (HUE * (2 * u[:, 12] - 1)).to(x.device))
    x = torch.where(per_image(u[:, 5] < P_JITTER), jittered, x)
    # grayscale
    x = torch.where(per_image(u[:, 9] < P_GRAY), _luma(x).expand_as(x), x)
    # Gaussian blur (kernel ~10 % of the side), per-image sigma
    sigma = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * u[:, 10]
    x = torch.where(per_image(u[:, 11] < P_BLUR), _gaussian_blur(x, sigma.to(x.device), max(3, (h // 10) | 1)), x)
    # solarization
    solarize = torch.rand(n, generator=generator) < P_SOLARIZE
    return torch.where(per_image(solarize), torch.where(x >= 0.5, 1.0 - x, x), x)


def shift_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of RGB images (N x 3 x H x W in [0, 1]) by ``shift`` (N, in turns),
    through HSV as torchvision's adjust_hue; saturation and value are kept."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    delta = v - x.min(1).values
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    d = delta.clamp_min(1e-12)
    rc, gc, bc = (v - r) / d, (v - g) / d, (v - b) / d
    h = torch.where(v == r, bc - gc, torch.where(v == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    h = (h + shift.view(-1, 1, 1)) % 1.0
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    sector = sector.long() % 6
    table = torch.stack([  # (sector, channel): RGB of each of the six hue sectors
        torch.stack([v, t, p]), torch.stack([q, v, p]), torch.stack([p, v, t]),
        torch.stack([p, q, v]), torch.stack([t, p, v]), torch.stack([v, p, q]),
    ])  # 6 x 3 x N x H x W
    index = sector.unsqueeze(0).unsqueeze(0).expand(1, 3, *sector.shape)
    return table.gather(0, index).squeeze(0).permute(1, 0, 2, 3)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of RGB images, N x 1 x H x W."""
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, size: int) -> torch.Tensor:
    n, c, h, w = x.shape
    r = torch.arange(size, device=x.device, dtype=x.dtype) - size // 2
    kernel = torch.exp(-(r[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*c) x size
    flat = x.reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (size // 2, size // 2, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, size // 2, size // 2), mode="reflect"), kernel[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


AUGMENTATIONS = {"affine": random_affine, "datadream": datadream_augment, "none": lambda images, generator: images}


def augment(name: str, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``train.augment``: 'affine' (the digits warp), 'datadream' or 'none'."""
    return AUGMENTATIONS[name](images, generator)


# ---------------------------------------------------------------- CutMix / Mixup


def mix_batch(kind: str, alpha: float, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator):
    """Mixup (Zhang et al., 2018) or CutMix (Yun et al., 2019) of a batch with a shuffled
    copy of itself: (mixed images, mixed (N, C) targets). ``kind`` 'both' picks one of the
    two per call; λ ~ Beta(α, α), drawn from the CPU generator (reproducible batches)."""
    import numpy as np

    n, _, h, w = images.shape
    if kind == "both":
        kind = "mixup" if torch.rand(1, generator=generator).item() < 0.5 else "cutmix"
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(n, generator=generator).to(images.device)
    if kind == "mixup":
        return lam * images + (1 - lam) * images[perm], lam * targets + (1 - lam) * targets[perm]
    # cutmix: a box of area (1 - λ) from the partner; λ re-measured from the box as cut
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(h, (1,), generator=generator)), int(torch.randint(w, (1,), generator=generator))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[perm][:, :, y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, lam * targets + (1 - lam) * targets[perm]


def mix_step(kind: str, alpha: float, p: float, real: torch.Tensor, real_targets: torch.Tensor,
             syn: torch.Tensor | None, syn_targets: torch.Tensor | None, generator: torch.Generator):
    """One step's CutMix/Mixup as ICML 2025's official code (Fsoft-AIC/ProtoAug
    classify/main.py) does it: with probability ``p`` the real rows, and the synthetic rows
    when given, are each mixed among themselves. Returns (real, real targets or None when
    the step is not mixed, synthetic, synthetic targets); a synthetic part left unmixed
    comes back as None."""
    if kind == "none" or torch.rand(1, generator=generator).item() >= p:
        return real, None, None, None
    real, real_targets = mix_batch(kind, alpha, real, real_targets, generator)
    if syn is None:
        return real, real_targets, None, None
    syn, syn_targets = mix_batch(kind, alpha, syn, syn_targets, generator)
    return real, real_targets, syn, syn_targets
