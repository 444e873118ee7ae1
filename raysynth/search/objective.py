"""What one trial does: apply its params, train, report val accuracy every epoch.

``train.workers == 1``: the loop runs inside the Tune trial process (with
``reuse_actors=True`` this costs ~0.75 s per trial on 2 cores). ``train.workers > 1``:
the trial builds a TorchTrainer and calls ``fit()`` (Train V2 inside Tune), reporting
through ``TuneReportCallback`` under a run name derived from the trial id, so a retried
trial resumes from its checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch

from raysynth.config import Config, from_dict
from raysynth.search.space import apply_params


def run_trial(
    params: dict[str, Any], base: dict[str, Any], home: str, storage_path: str, weight_context: dict | None = None
) -> None:
    import os

    from ray import tune

    # the driver's RAYSYNTH_HOME, whatever the environment of the cluster's workers
    os.environ["RAYSYNTH_HOME"] = home
    from raysynth.train.task import cached_split

    from raysynth.search.weights import WeightContext

    base_config = from_dict(Config, base)
    context = WeightContext(**weight_context) if weight_context else None
    config, weights = apply_params(base_config, params, cached_split(base_config).classes, context)
    if config.train.workers > 1:
        from raysynth.train.ray_train import fit_with_trainer

        trial_id = tune.get_context().get_trial_id()
        fit_with_trainer(
            config,
            weights,
            use_synthetic=True,
            name=f"trial-{trial_id}",
            storage_path=storage_path,
            checkpoint=False,
            in_tune=True,
        )
        return
    train_in_process(config, weights, report=lambda m: tune.report(m))


def train_in_process(config: Config, weights: list[float] | None, report=None, use_synthetic: bool = True):
    """Train one config in this process; returns (last epoch's metrics, trained models)."""
    from raysynth.config import training_protocol
    from raysynth.losses import parse_loss
    from raysynth.train.loop import train_few_shot
    from raysynth.train.task import build_models, cached_split, train_data

    torch.set_num_threads(config.train.threads)
    split = cached_split(config)
    models = build_models(config, split.num_classes)
    data = train_data(config, use_synthetic=use_synthetic)
    w = torch.tensor(weights, dtype=torch.float32) if weights is not None else None
    callback = (lambda metrics, _state: report(metrics.as_dict())) if report else None
    metrics = train_few_shot(
        models,
        data,
        config.train,
        w,
        on_epoch_end=callback,
        objectives=parse_loss(config.loss),
        protocol=training_protocol(config),
        partition=config.partition,
    )
    return metrics, models
