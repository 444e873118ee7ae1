"""Per-class quality control for the UniCon protocol (its MNIST experiments).

Quality is controlled through what the generator *learns* each class from:
- ``faithful``: the class's own shots;
- ``counter``: shots of a partner class (the generator makes the wrong digit; see
  :func:`partner_class`);
- ``morph:<rho>``: rho * own shot + (1 - rho) * partner shot.
A search should learn UniCon weights near 1, near 0 and in between for them.

Which reading of UniCon's rho: its eq. 4 is M(rho) = rho * I_C0 + (1 - rho) * I_C9, but
its dataset names contradict it (MNIST_0_1, "ideal", gives class 0 rho = 0, which eq. 4
makes a pure nine). raysynth takes eq. 4 with C0 the class itself: rho is the share of
the class's own image, so ``morph:1`` is faithful and ``morph:0`` is ``counter``. The
paper's MNIST_0.7_0.3 is ``morph:0.7`` for both classes by eq. 4 (``morph:0.3`` by its
dataset names).
"""

from __future__ import annotations

import torch

from raysynth.config import ConfigError
from raysynth.data.base import ImageSet, float_images


def parse_quality(spec: str, where: str = "quality") -> tuple[str, float]:
    """'faithful' -> ('faithful', 1.0); 'counter' -> ('counter', 0.0); 'morph:0.3' -> ('morph', 0.3)."""
    if spec == "faithful":
        return "faithful", 1.0
    if spec == "counter":
        return "counter", 0.0
    if spec.startswith("morph:"):
        try:
            rho = float(spec.split(":", 1)[1])
        except ValueError:
            rho = -1.0
        if 0.0 <= rho <= 1.0:
            return "morph", rho
    raise ConfigError(f"{where}: expected 'faithful', 'counter' or 'morph:<rho in [0,1]>', got '{spec}'")


def partner_class(c: int, num_classes: int, degraded: list[int] | None = None) -> int:
    """The class whose images a degraded class is made of.

    As in UniCon's MNIST_1_0, degraded classes are swapped among themselves (five's
    images are sixes and six's are fives), so no faithful pool of the partner class
    outweighs the damage. A single degraded class takes the class half-way round.
    """
    degraded = sorted(degraded or [])
    if c in degraded and len(degraded) > 1:
        return degraded[(degraded.index(c) + 1) % len(degraded)]
    return (c + (num_classes + 1) // 2) % num_classes


def check_quality_classes(quality: dict[str, str], classes: list[str]) -> None:
    unknown = sorted(set(quality) - set(classes))
    if unknown:
        raise ConfigError(f"pool.quality: unknown class '{unknown[0]}' (classes: {', '.join(classes)})")


def quality_controlled_shots(shots: ImageSet, classes: list[str], quality: dict[str, str]) -> ImageSet:
    """The images the generator learns each class from, after quality control."""
    check_quality_classes(quality, classes)
    source = float_images(shots.images)
    images = source.clone()
    specs = {classes.index(name): parse_quality(spec, f"pool.quality.{name}") for name, spec in quality.items()}
    degraded = [c for c, (kind, _) in specs.items() if kind != "faithful"]
    for c, (kind, rho) in specs.items():
        if kind == "faithful":
            continue
        own = torch.nonzero(shots.labels == c).flatten()
        other = torch.nonzero(shots.labels == partner_class(c, len(classes), degraded)).flatten()
        other = other[torch.arange(len(own)) % len(other)]  # pair images, cycling the shorter
        images[own] = rho * source[own] + (1.0 - rho) * source[other]
    return ImageSet(images, shots.labels.clone())
