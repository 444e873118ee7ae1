"""Ray Train wrapper around the plain loop: DDP across workers, checkpoints, resume.

Used for trials with ``train.workers > 1`` and for every final (re)training, so that
long runs get Ray Train's checkpointing and fault tolerance. The per-worker function
runs the same :func:`raysynth.train.loop.train_few_shot` as the in-trial path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from raysynth.config import Config, from_dict, raysynth_home


CHECKPOINT_FILE = "state.pt"


@contextlib.contextmanager
def state_checkpoint(state: dict):
    """A Ray checkpoint holding a training state dict (the loop's ``on_epoch_end`` state),
    valid inside the ``with`` block: pass it to ``ray.train.report``/``ray.tune.report``."""
    from ray.train import Checkpoint

    with tempfile.TemporaryDirectory() as d:
        torch.save(state, os.path.join(d, CHECKPOINT_FILE))
        yield Checkpoint.from_directory(d)


def load_state(checkpoint) -> dict | None:
    """The state dict in a checkpoint written by :func:`state_checkpoint` (None: none)."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        return torch.load(Path(d) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)


def _worker_loop(loop_config: dict[str, Any]) -> None:
    """Runs on each Ray Train worker."""
    import ray.train
    import ray.train.torch

    from raysynth.config import training_protocol
    from raysynth.losses import parse_loss
    from raysynth.train.loop import load_trainable_state, model_accuracy, train_few_shot
    from raysynth.train.task import build_models, cached_split, train_data

    os.environ["RAYSYNTH_HOME"] = loop_config["home"]  # the driver's, not the worker node's
    config = from_dict(Config, loop_config["config"])
    torch.set_num_threads(config.train.threads)
    context = ray.train.get_context()
    rank = context.get_world_rank()

    split = cached_split(config)
    protocol = training_protocol(config)
    bare = build_models(config, split.num_classes)
    models = bare
    if context.get_world_size() > 1:
        # LoRA leaves most parameters frozen (requires_grad=False: DDP ignores them); in
        # the two-stage protocol the head gets no gradient in stage 1, so DDP must look
        models = [
            ray.train.torch.prepare_model(m, parallel_strategy_kwargs={"find_unused_parameters": protocol == "two_stage"})
            for m in bare
        ]
    data = train_data(config, use_synthetic=loop_config["use_synthetic"])
    weights = loop_config.get("class_weights")
    weights = torch.tensor(weights, dtype=torch.float32) if weights is not None else None

    state = load_state(ray.train.get_checkpoint())

    def on_epoch_end(metrics, state_dict):
        report = metrics.as_dict()
        last = metrics.epoch == config.train.epochs
        if last and loop_config.get("evaluate_test"):
            # the one and only look at the test split, after training is over
            report.update(_test_report(bare, split))
        if loop_config.get("checkpoint") and rank == 0:
            with state_checkpoint(state_dict) as checkpoint:
                ray.train.report(report, checkpoint=checkpoint)
        else:
            ray.train.report(report)

    last = train_few_shot(
        models,
        data,
        config.train,
        weights,
        on_epoch_end=on_epoch_end,
        state=state,
        rank=rank,
        eval_model=bare,
        objectives=parse_loss(config.loss),
        protocol=protocol,
        partition=config.partition,
    )
    if last is None:
        # resumed from the final checkpoint of a finished run: nothing left to train,
        # report its final metrics again (the loaded models are the finished ones)
        for model, run_state in zip(bare, state["runs"]):
            load_trainable_state(model, run_state["model"])
            model.probes = run_state.get("probes", [])
        report = {"epoch": state["epoch"], "val_acc": model_accuracy(bare, split.val.images, split.val.labels)}
        if loop_config.get("evaluate_test"):
            report.update(_test_report(bare, split))
        ray.train.report(report)


def _test_report(models, split) -> dict[str, float]:
    """Test accuracy, mean and spread over every trained classifier (seeds, probes)."""
    import json

    from raysynth.train.loop import confusion_matrix, model_accuracies, model_predictions

    test = split.test  # one read of the audited test split
    images, labels = test.images, test.labels
    accs = torch.tensor(model_accuracies(models, images, labels))
    confusion = confusion_matrix(labels, model_predictions(models[0], images), split.num_classes)
    return {
        "test_acc": accs.mean().item(),
        "test_acc_std": accs.std().item() if len(accs) > 1 else 0.0,
        "test_confusion": json.dumps(confusion),  # of the first seed's model
    }


def fit_with_trainer(
    config: Config,
    class_weights: list[float] | None,
    use_synthetic: bool,
    name: str,
    storage_path: str | Path,
    evaluate_test: bool = False,
    checkpoint: bool = True,
    in_tune: bool = False,
) -> dict[str, Any]:
    """Train with a TorchTrainer; returns the final reported metrics.

    ``name`` must be stable for a given run so that a retried run finds its checkpoints
    and resumes. ``in_tune``: forward each report to the surrounding Tune trial.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    callbacks = []
    if in_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    use_gpu = torch.cuda.is_available()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "config": config.to_dict(),
            "class_weights": class_weights,
            "use_synthetic": use_synthetic,
            "evaluate_test": evaluate_test,
            "checkpoint": checkpoint,
            "home": str(raysynth_home()),
        },
        scaling_config=ScalingConfig(
            num_workers=config.train.workers,
            use_gpu=use_gpu,
            resources_per_worker=None if use_gpu else {"CPU": config.train.threads},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage_path),
            callbacks=callbacks,
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            # inside a Tune trial, Tune retries (search.max_failures) and the retried trial's
            # trainer resumes from this run's checkpoint; retrying here as well would run a
            # NaN trial (max_failures + 1) x 3 times
            failure_config=FailureConfig(max_failures=0 if in_tune else 2),
        ),
    )
    result = trainer.fit()
    return dict(result.metrics or {})
