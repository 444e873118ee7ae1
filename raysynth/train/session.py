"""One training run of a config, set up the same way wherever it runs: in a Tune trial
(``train.workers == 1``), on each Ray Train worker, in a benchmark or a test — from the
artifacts its :class:`raysynth.context.RunContext` names.

:func:`build_run` gathers what :func:`raysynth.train.loop.train_few_shot` needs — the
models (backbone + fresh LoRA + heads), the data (shots, validation split, the pool
with soft labels, filter and partitions), the class weights, the objectives and the
protocol; :func:`train_in_process` runs it here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raysynth.config import Config
from raysynth.context import RunContext
from raysynth.losses import Objective, parse_loss
from raysynth.models.classifier import FewShotClassifier
from raysynth.train.data import train_data
from raysynth.train.loop import TrainData, TrainResult, train_few_shot
from raysynth.train.model import build_models


def training_protocol(config: Config, objectives: list[Objective]) -> str:
    """'joint' or 'two_stage' ('auto' resolved from the selected objectives)."""
    if config.train.protocol != "auto":
        return config.train.protocol
    return "two_stage" if all(o.representation for o in objectives) else "joint"


@dataclass
class Run:
    """Everything one training run of a config needs, built in the process that trains."""

    config: Config
    models: list[FewShotClassifier]
    data: TrainData
    weights: torch.Tensor | None  # per-class weights of the synthetic data (None: all 1)
    objectives: list[Objective]
    protocol: str

    def train(self, on_epoch_end=None, state: dict | None = None, **loop_args) -> TrainResult:
        """:func:`train_few_shot` over this run (``loop_args``: rank, eval_model, or
        DDP-wrapped ``model``)."""
        loop_args.setdefault("model", self.models)
        return train_few_shot(
            data=self.data,
            config=self.config.train,
            class_weights=self.weights,
            on_epoch_end=on_epoch_end,
            state=state,
            objectives=self.objectives,
            protocol=self.protocol,
            partition=self.config.partition,
            **loop_args,
        )


def build_run(
    config: Config, weights: list[float] | None, context: RunContext, use_synthetic: bool = True, device: str = "cpu"
) -> Run:
    """Models (on ``device``), data (kept on the CPU; each batch moves) and objectives of
    one run, everything loaded by the keys of ``context``; torch uses ``train.threads``
    threads."""
    torch.set_num_threads(config.train.threads)
    objectives = parse_loss(config.loss)  # once per run: the trial's own loss parameters
    data = train_data(config, context, objectives, use_synthetic=use_synthetic)
    return Run(
        config=config,
        models=[m.to(device) for m in build_models(config, context, objectives)],
        data=data,
        weights=torch.tensor(weights, dtype=torch.float32) if weights is not None else None,
        objectives=objectives,
        protocol=training_protocol(config, objectives),
    )


def train_in_process(
    config: Config, weights: list[float] | None, context: RunContext, report=None, use_synthetic: bool = True,
    on_epoch_end=None, state=None, device: str = "cpu",
) -> tuple[TrainResult, list[FewShotClassifier]]:
    """Train one config in this process (on ``device``); returns (the result, the
    trained models).

    ``report(metrics_dict)`` after each epoch, or ``on_epoch_end(metrics, state_dict)``
    for a caller that checkpoints; ``state`` resumes from such a state dict."""
    run = build_run(config, weights, context, use_synthetic, device)
    if on_epoch_end is None and report is not None:
        on_epoch_end = lambda metrics, _state: report(metrics.as_dict())  # noqa: E731
    return run.train(on_epoch_end=on_epoch_end, state=state), run.models
