"""The generator interface and registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from raysynth.config import PoolConfig
from raysynth.data.base import ImageSet

GENERATORS: dict[str, type["Generator"]] = {}


def register_generator(name: str):
    def wrap(cls: type["Generator"]) -> type["Generator"]:
        if name in GENERATORS:
            raise ValueError(f"generator '{name}' is already registered")
        cls.name = name
        GENERATORS[name] = cls
        return cls

    return wrap


class Generator(ABC):
    """Image-to-image translation toward a target class (SDEdit-style, strength s).

    Diff-Gen, Diff-Aug and Diff-Mix differ only in the reference: noise, an image of the
    same class, an image of another class.
    """

    name: ClassVar[str]
    # Bump when a change alters the images a config produces: it is part of the pool key.
    version: ClassVar[int] = 1

    def __init__(self, config: PoolConfig, num_classes: int):
        self.config = config
        self.num_classes = num_classes

    def config_key(self) -> dict:
        """Everything about this generator that changes its output (part of the pool key)."""
        return {"name": self.name}

    @abstractmethod
    def fit(self, shots: ImageSet) -> None:
        """Learn the classes from (possibly quality-controlled) real shots."""

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


def create_generator(config: PoolConfig, num_classes: int) -> Generator:
    return GENERATORS[config.generator](config, num_classes)
