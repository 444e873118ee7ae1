"""What one trial does: apply its params, train, report val accuracy every epoch.

``train.workers == 1``: the loop runs inside the Tune trial process (with
``reuse_actors=True`` this costs ~0.75 s per trial on 2 cores); every
``search.checkpoint_every`` epochs it reports with a checkpoint (trainable weights,
optimiser, schedule), and a retried or resumed trial starts from the last one. ``train.workers > 1``:
the trial builds a TorchTrainer and calls ``fit()`` (Train V2 inside Tune), reporting
through ``TuneReportCallback`` under a run name derived from the trial id, so a retried
trial resumes from its checkpoint.
"""

from __future__ import annotations

from typing import Any

from raysynth.devices import placement, work_device
from raysynth.config import Config, from_dict
from raysynth.context import RunContext
from raysynth.search.space import apply_params
from raysynth.train.ray_train import load_state, state_checkpoint, train_with_trainer
from raysynth.train.session import train_in_process


def run_trial(params: dict[str, Any], base: dict[str, Any], context: RunContext, storage_path: str) -> None:
    """The Tune trainable: the base config with the trial's ``params``, trained on what
    ``context`` names (the driver's home, pools, partitions, backbone, class quality)."""
    from ray import tune

    context.enter()  # the driver's RAYSYNTH_HOME, whatever the environment of the cluster's workers
    config, weights = apply_params(from_dict(Config, base), params, list(context.classes), context.weights, context.space)
    every = config.search.checkpoint_every
    where = placement()  # node and GPU ids of the trial (MLflow tags, placement tests)
    if config.train.workers > 1:
        trial_id = tune.get_context().get_trial_id()
        result = train_with_trainer(
            config,
            weights,
            context,
            use_synthetic=True,
            name=f"trial-{trial_id}",
            storage_path=storage_path,
            checkpoint=every > 0,  # a retried trial's trainer resumes from it (same run name)
            in_tune=True,
            kind="trial",
        )
        final = dict(result.metrics or {})
        # the last epoch, reported once the trainer has released its workers (see
        # ray_train._report_to_tune_before_last)
        tune.report({**final, **{k: v for k, v in where.items() if k not in final}})
        return

    # a retried or resumed trial continues after its last checkpointed epoch
    state = load_state(tune.get_checkpoint())

    def on_epoch_end(metrics, state_dict) -> None:
        report = {**metrics.as_dict(), **where}
        if every and (metrics.epoch % every == 0 or metrics.epoch == config.train.epochs):
            with state_checkpoint(state_dict, for_tune=True) as checkpoint:
                tune.report(report, checkpoint=checkpoint)
        else:
            tune.report(report)

    train_in_process(config, weights, context, on_epoch_end=on_epoch_end, state=state, device=work_device())
