"""Synthetic-image generators. One backend per file in ``backends/``, registered by name;
adding a backend is adding a file there.

Every backend implements :class:`raysynth.generators.base.Generator`:
``fit(shots)`` learns the classes from the few real shots, ``translate(references,
target_classes, strength, seeds)`` moves reference images toward target classes.
"""

from raysynth.generators.base import GENERATORS, Generator, create_generator, register_generator
from raysynth.registry import import_modules

import_modules("raysynth.generators.backends")

__all__ = ["GENERATORS", "Generator", "create_generator", "register_generator"]
