"""``morph``: pixel-space interpolation toward a real image of the target class.

The cheapest stand-in for SDEdit: a reference of class j is moved toward a learned image
of target class i by strength s, ``x = (1 - s) * ref + s * warp(target)``, where
``warp`` is a random small affine transform (rotation, scale, shift) so that the pool
holds new images of the class rather than copies of the few shots. It runs in
milliseconds, which keeps the embedded demo fast; its pools keep the property the
search needs: a class's pool is exactly as faithful as what the generator learned.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from raysynth.data.base import ImageSet
from raysynth.generators.base import Generator, register_generator


@register_generator("morph")
class MorphGenerator(Generator):
    version = 2  # v2: random affine warp of the target image
    # Ranges of the random warp: digits stay legible under +-15 degrees, +-10 % scale
    # and a shift of 8 % of the image side.
    max_rotation_deg = 15.0
    max_scale = 0.10
    max_shift = 0.08

    def fit(self, shots: ImageSet) -> None:
        self.bank = [shots.images[shots.labels == c] for c in range(self.num_classes)]
        missing = [c for c, b in enumerate(self.bank) if len(b) == 0]
        if missing:
            raise ValueError(f"morph: no images to learn classes {missing} from")

    def _warp_params(self, g: torch.Generator) -> torch.Tensor:
        u = torch.rand(4, generator=g) * 2 - 1
        angle = math.radians(self.max_rotation_deg) * u[0].item()
        scale = 1.0 + self.max_scale * u[1].item()
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        return torch.tensor(
            [[cos, -sin, self.max_shift * 2 * u[2].item()], [sin, cos, self.max_shift * 2 * u[3].item()]]
        )

    def translate(self, references, target_classes, strength, seeds):
        targets, thetas = [], []
        for c, seed in zip(target_classes.tolist(), seeds.tolist()):
            g = torch.Generator().manual_seed(int(seed))
            bank = self.bank[c]
            targets.append(bank[torch.randint(len(bank), (1,), generator=g).item()])
            thetas.append(self._warp_params(g))
        targets, thetas = torch.stack(targets), torch.stack(thetas)
        grid = F.affine_grid(thetas, list(targets.shape), align_corners=False)
        warped = F.grid_sample(targets, grid, padding_mode="zeros", align_corners=False)
        out = (1.0 - strength) * references + strength * warped
        return out.clamp(0, 1), target_classes.clone()
