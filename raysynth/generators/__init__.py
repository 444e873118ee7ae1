"""Synthetic-image generators. One backend per file, registered by name.

Every backend implements :class:`raysynth.generators.base.Generator`:
``fit(shots)`` learns the classes from the few real shots, ``translate(references,
target_classes, strength, seeds)`` moves reference images toward target classes.
"""

from raysynth.generators.base import GENERATORS, Generator, create_generator, register_generator
from raysynth.generators import ddpm as _ddpm  # noqa: F401  (registers "ddpm")
from raysynth.generators import morph as _morph  # noqa: F401  (registers "morph")
from raysynth.generators import stable_diffusion as _sd  # noqa: F401  (registers "stable_diffusion")

__all__ = ["GENERATORS", "Generator", "create_generator", "register_generator"]
