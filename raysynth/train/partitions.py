"""What a partition clusters: the library side of the partitions that :mod:`raysynth.prepare.partitions` computes before a search (static) and that the
loop recomputes per batch (``partition.method: online``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from raysynth.config import Config
from raysynth.context import RunContext
from raysynth.train.evaluate import as_input, encode
from raysynth.train.model import build_model


def pixel_vectors(images, side: int = 32, chunk: int = 1024) -> torch.Tensor:
    """Flattened pixels (area-resized to at most ``side`` a side) of float or uint8 images,
    or of a memory-mapped pool, read a chunk at a time."""
    out = []
    for i in range(0, len(images), chunk):
        x = as_input(images[i : i + chunk], torch.device("cpu"))
        if x.shape[-1] > side:
            x = F.interpolate(x, size=(side, side), mode="area")
        out.append(x.reshape(len(x), -1).to(torch.float32))
    return torch.cat(out) if out else torch.empty(0, 3 * side**2)


def partition_vectors(
    config: Config, context: RunContext, real: torch.Tensor, synthetic: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """What k-means clusters: raw pixels, or frozen pretrained-backbone features."""
    if config.partition.space == "pixels":
        side = config.partition.pixel_side
        return pixel_vectors(real, side), pixel_vectors(synthetic, side)
    model = build_model(config, context, with_objectives=False)  # the frozen backbone
    return encode(model, real), encode(model, synthetic)
