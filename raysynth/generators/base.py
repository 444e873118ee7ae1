"""The generator interface and registry.

A backend is one class, registered by name, with a ``Params`` dataclass for its options
(``pool.options`` in the config, validated at load time like every other field).
Backends whose ``fit`` is expensive (``trainable = True``: a diffusion model trained on
the shots) are fitted once by the pipeline, saved as safetensors, and loaded by every
generation actor; the others fit in each actor.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from raysynth.config import PoolConfig, from_dict
from raysynth.data.base import ImageSet
from raysynth.registry import Registry

GENERATORS: Registry[type["Generator"]] = Registry("generator")


def register_generator(name: str):
    def wrap(cls: type["Generator"]) -> type["Generator"]:
        cls.name = name
        return GENERATORS.add(name, cls)

    return wrap


@dataclass
class NoParams:
    """A backend without options."""


class Generator(ABC):
    """Image-to-image translation toward a target class (SDEdit-style, strength s).

    Diff-Gen, Diff-Aug and Diff-Mix differ only in the reference: noise, an image of the
    same class, an image of another class.
    """

    name: ClassVar[str]
    # Bump when a change alters the images a config produces: it is part of the pool key.
    version: ClassVar[int] = 1
    Params: ClassVar[type] = NoParams
    # True: fit() is expensive; the pipeline runs it once and actors load() the result.
    trainable: ClassVar[bool] = False

    def __init__(self, config: PoolConfig, classes: list[str], metaclass: str = "", device: str = "cpu"):
        self.config = config
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.metaclass = metaclass
        self.device = device
        self.params = self.parse_options(config.options)

    @classmethod
    def parse_options(cls, options: dict[str, Any]) -> Any:
        """``pool.options`` as this backend's ``Params`` (ConfigError naming the field)."""
        return from_dict(cls.Params, dict(options), "pool.options")

    @classmethod
    def check_environment(cls, config: PoolConfig) -> None:
        """Checks of the environment (weights present, ...) run when the config is loaded,
        before anything starts: raise ConfigError with one line."""

    @classmethod
    def config_key(cls, config: PoolConfig) -> dict:
        """Everything about this backend that changes its output (part of the pool key)."""
        return {"name": cls.name, "version": cls.version, "options": dataclasses.asdict(cls.parse_options(config.options))}

    @abstractmethod
    def fit(self, shots: ImageSet) -> None:
        """Learn the classes from (possibly quality-controlled) real shots."""

    def save(self, directory: Path) -> None:
        """Write what fit() learned (safetensors/json only). Trainable backends only."""
        raise NotImplementedError(f"generator '{self.name}' has nothing to save")

    def load(self, directory: Path) -> None:
        """Read what save() wrote. Trainable backends only."""
        raise NotImplementedError(f"generator '{self.name}' has nothing to load")

    @abstractmethod
    def translate(
        self,
        references: torch.Tensor,
        target_classes: torch.Tensor,
        strength: float,
        seeds: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Move each reference toward its target class by ``strength``.

        references: N x 3 x H x W in [0, 1]; target_classes, seeds: N integers.
        Returns (images N x 3 x H x W in [0, 1], labels N) — labels are the target classes.
        Output depends only on the inputs and the per-image seeds.
        """

    def generate(self, target_classes: torch.Tensor, seeds: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Diff-Gen: images of the target classes from noise (no reference).

        Default: translate a per-image noise image with strength 1. Backends with a
        text-to-image path override this.
        """
        noise = torch.stack([torch.rand(3, size, size, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
        return self.translate(noise, target_classes, 1.0, seeds)


def create_generator(config: PoolConfig, classes: list[str], metaclass: str = "", device: str = "cpu") -> Generator:
    return GENERATORS.get(config.generator, "pool.generator")(config, classes, metaclass, device)
