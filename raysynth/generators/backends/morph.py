"""``morph``: pixel-space interpolation toward a real image of the target class.

The cheapest stand-in for SDEdit: a reference of class j is moved toward a learned image
of target class i by strength s, ``x = (1 - s) * ref + s * warp(target)``, where
``warp`` is a random small affine transform (rotation, scale, shift) so that the pool
holds new images of the class rather than copies of the few shots. It runs in
milliseconds, which keeps the embedded demo fast; its pools keep the property the
search needs: a class's pool is exactly as faithful as what the generator learned.
"""

from __future__ import annotations

import torch

from raysynth.data.augment import random_affine_matrices, warp
from raysynth.data.base import ImageSet
from raysynth.generators.base import Generator, register_generator


@register_generator("morph")
class MorphGenerator(Generator):
    version = 4  # v3: warp shared with training augmentation; v4: degraded classes swap partners

    def fit(self, shots: ImageSet) -> None:
        self.bank = [shots.images[shots.labels == c] for c in range(self.num_classes)]
        missing = [c for c, b in enumerate(self.bank) if len(b) == 0]
        if missing:
            raise ValueError(f"morph: no images to learn classes {missing} from")

    def translate(self, references, target_classes, strength, seeds):
        targets, matrices = [], []
        for c, seed in zip(target_classes.tolist(), seeds.tolist()):
            g = torch.Generator().manual_seed(int(seed))  # one generator per image: shard-independent
            bank = self.bank[c]
            targets.append(bank[torch.randint(len(bank), (1,), generator=g).item()])
            matrices.append(random_affine_matrices(1, g)[0])
        warped = warp(torch.stack(targets), torch.stack(matrices))
        out = (1.0 - strength) * references + strength * warped
        return out.clamp(0, 1), target_classes.clone()
