"""The objective registry: each loss file registers the objective(s) it implements.

A training objective is a named, registered class with a typed ``Params`` dataclass (the
``loss.<name>`` section of a search-space YAML) and a ``terms(batch)`` method returning
named, already-weighted loss terms; the training loop sums every selected objective's
terms and logs each term on its own. Adding an objective is adding a file::

    @register_objective
    class MyObjective(Objective):
        name = "mine"
        Params = MyParams
        def terms(self, batch): return {"mine": ...}

Capabilities an objective declares (class attributes) tell the model builder and the
data loader what to prepare: a projection head (contrastive objectives), partitions
(k-means regions of real + synthetic data), or a fixed-prototype classification head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from raysynth.config import ConfigError, from_dict
from raysynth.registry import Registry


@dataclass
class LossBatch:
    """Everything an objective may use for one optimiser step.

    Synthetic rows carry both a soft label (Diff-Mix) and the class they were generated
    for (``syn_class``): per-class weights and partition/contrastive logic use the latter.
    """

    logits_real: torch.Tensor
    y_real: torch.Tensor
    class_weights: torch.Tensor  # (C,) UniCon's per-class trust in the synthetic data
    logits_syn: torch.Tensor | None = None
    soft_syn: torch.Tensor | None = None
    syn_class: torch.Tensor | None = None
    proj_real: torch.Tensor | None = None  # L2-normalised projections (contrastive objectives)
    proj_syn: torch.Tensor | None = None
    part_real: torch.Tensor | None = None  # partition (k-means region) of each sample
    part_syn: torch.Tensor | None = None
    soft_real: torch.Tensor | None = None  # (N, C) targets of CutMix/Mixup'ed real rows
    # partition.scope 'all' (the lightweight variant): every sample's latest output, and
    # which samples the batch's rows are
    memory: Any = None  # raysynth.losses.memory.OutputMemory
    real_index: torch.Tensor | None = None
    syn_index: torch.Tensor | None = None
    pool_images: int = 0  # synthetic images the model trains on (the bound loss's official g)

    @property
    def real_targets(self) -> torch.Tensor:
        """What a cross-entropy on the real rows compares against: the mixed soft targets
        (train.mix) or the class indices."""
        return self.soft_real if self.soft_real is not None else self.y_real

    @property
    def has_synthetic(self) -> bool:
        return self.logits_syn is not None and len(self.logits_syn) > 0


class Objective:
    """Base class of a registered training objective."""

    name: ClassVar[str]
    Params: ClassVar[type]
    needs_projection: ClassVar[bool] = False
    needs_partitions: ClassVar[bool] = False
    # its regional terms can run over all data (partition.scope 'all'): the training
    # loop keeps an OutputMemory of every sample's latest output for it
    uses_output_memory: ClassVar[bool] = False
    # its real-row cross-entropy takes CutMix/Mixup's soft targets (train.mix)
    mixes_labels: ClassVar[bool] = False
    # trained in stage 1 of the two-stage protocol (encoder), not with a classifier
    representation: ClassVar[bool] = False
    # "prototype": the model's classifier is a fixed-prototype head (see prototypes.py)
    head: ClassVar[str | None] = None

    def __init__(self, params: Any):
        self.params = params

    def terms(self, batch: LossBatch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def uses_synthetic(self, class_weights: torch.Tensor) -> bool:
        """Whether synthetic rows change this objective under these class weights. The
        default is a class-weighted objective: with every w_c = 0 they add nothing, and
        the training loop draws no synthetic batch unless another objective uses it."""
        return bool(class_weights.sum() > 0)


OBJECTIVES: Registry[type[Objective]] = Registry("objective")


def register_objective(cls: type[Objective]) -> type[Objective]:
    return OBJECTIVES.add(cls.name, cls)


def parse_loss(raw: dict[str, Any] | None) -> list[Objective]:
    """``loss`` section -> objective instances (ConfigError naming the field if bad)."""
    raw = raw if raw else {"ce": {}}
    objectives = []
    for name, spec in raw.items():
        if name not in OBJECTIVES:
            raise ConfigError(f"loss.{name}: unknown objective (known: {', '.join(sorted(OBJECTIVES))})")
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise ConfigError(f"loss.{name}: expected a mapping of parameters, got {spec!r}")
        cls = OBJECTIVES[name]
        objectives.append(cls(from_dict(cls.Params, spec, f"loss.{name}")))  # the fields' rules checked
    return objectives
