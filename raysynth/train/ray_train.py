"""Ray Train wrapper around the plain loop: DDP across workers, checkpoints, resume.

Used for trials with ``train.workers > 1`` and for every final (re)training, so that
long runs get Ray Train's checkpointing and fault tolerance. Each worker builds the same
run as the in-trial path (:func:`raysynth.train.session.build_run`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from raysynth.cluster import resources_of
from raysynth.devices import gpus_have_cuda, placement, work_device
from raysynth.config import Config, from_dict
from raysynth.context import RunContext
from raysynth.logs import train_logging_config
from raysynth.train.evaluate import confusion_matrix, model_accuracies, model_accuracy, model_predictions

CHECKPOINT_FILE = "state.pt"


@contextlib.contextmanager
def state_checkpoint(state: dict, for_tune: bool = False):
    """A Ray checkpoint holding a training state dict (the loop's ``on_epoch_end`` state),
    valid inside the ``with`` block: pass it to ``ray.train.report`` (or, ``for_tune``,
    ``ray.tune.report``: Ray wants each its own Checkpoint class)."""
    if for_tune:
        from ray.tune import Checkpoint
    else:
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
    """Runs on each Ray Train worker: the same run as in a trial, wrapped in DDP."""
    import ray.train
    import ray.train.torch

    from raysynth.train.session import build_run

    context: RunContext = loop_config["context"]
    context.enter()  # the driver's home, not the worker node's
    config = from_dict(Config, loop_config["config"])
    train_context = ray.train.get_context()
    rank = train_context.get_world_rank()
    run = build_run(config, loop_config.get("class_weights"), context, loop_config["use_synthetic"], device=work_device())
    where = placement()  # node and GPU ids of this worker (MLflow tags of the final runs)
    split = context.split()
    models = run.models
    if train_context.get_world_size() > 1:
        # LoRA leaves most parameters frozen (requires_grad=False: DDP ignores them); in
        # the two-stage protocol the head gets no gradient in stage 1, so DDP must look
        unused = run.protocol == "two_stage"
        models = [ray.train.torch.prepare_model(m, parallel_strategy_kwargs={"find_unused_parameters": unused}) for m in models]
    state = load_state(ray.train.get_checkpoint())

    def on_epoch_end(metrics, state_dict):
        report = {**metrics.as_dict(), **where}
        if metrics.epoch == config.train.epochs and loop_config.get("evaluate_test"):
            # the one and only look at the test split, after training is over
            report.update(_test_report(run.models, [r["probes"] for r in state_dict["runs"]], split))
        if loop_config.get("checkpoint") and rank == 0:
            with state_checkpoint(state_dict) as checkpoint:
                ray.train.report(report, checkpoint=checkpoint)
        else:
            ray.train.report(report)

    result = run.train(on_epoch_end=on_epoch_end, state=state, model=models, rank=rank, eval_model=run.models)
    if result.metrics is None:
        # resumed from the final checkpoint of a finished run: nothing left to train,
        # report its final metrics again (the loaded models are the finished ones)
        val = model_accuracy(run.models, split.val.images, split.val.labels, result.probes)
        report = {"epoch": state["epoch"], "val_acc": val, **where}
        if loop_config.get("evaluate_test"):
            report.update(_test_report(run.models, result.probes, split))
        ray.train.report(report)


def _test_report(models, probes, split) -> dict[str, float]:
    """Test accuracy, mean and spread over every trained classifier (seeds, probes)."""
    test = split.test  # one read of the audited test split
    images, labels = test.images, test.labels
    accs = torch.tensor(model_accuracies(models, images, labels, probes))
    first = probes[0] if probes else None
    preds = model_predictions(models[0], images, first)
    # the first seed's classifier is the one a search logs as its MLflow model, which takes
    # 8-bit images: its accuracy on the test images as 8-bit (generated-at-load datasets,
    # digits, hold float images; for datasets decoded from files they are the same)
    as_8bit = images if images.dtype == torch.uint8 else images.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    preds_8bit = preds if as_8bit is images else model_predictions(models[0], as_8bit, first)
    return {
        "test_acc": accs.mean().item(),
        "test_acc_std": accs.std().item() if len(accs) > 1 else 0.0,
        "model_test_acc": (preds_8bit == labels).float().mean().item(),
        "test_confusion": json.dumps(confusion_matrix(labels, preds, split.num_classes)),  # of the first seed's model
    }


def _report_to_tune_before_last(last_epoch: int):
    """Ray's TuneReportCallback, holding back the final epoch's report.

    Tune stops a trial at its final report (ASHA at max_t, or the trial's last epoch), and
    stopping interrupts ``fit()`` while the trainer still shuts down its worker group: the
    controller then dies with the trial and the group's placement group is left for Ray
    Train's cleaner, which needs the dashboard's state API. Without a dashboard it is
    never removed and its CPUs are held forever (a pool generated afterwards waits for
    them). The trial reports the last epoch itself, after ``fit()`` has returned.
    """
    from ray.tune.integration.ray_train import TuneReportCallback

    class ReportBeforeLast(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if metrics and metrics[0].get("epoch", 0) >= last_epoch:
                return
            super().after_report(run_context, metrics, checkpoint)

    return ReportBeforeLast()


def final_state(result) -> dict | None:
    """The training state (per model: trainable weights and probes) in a Ray Train
    result's last checkpoint; None if it kept none."""
    return load_state(result.checkpoint)


def train_with_trainer(
    config: Config,
    class_weights: list[float] | None,
    context: RunContext,
    use_synthetic: bool,
    name: str,
    storage_path: str | Path,
    evaluate_test: bool = False,
    checkpoint: bool = True,
    in_tune: bool = False,
    kind: str = "final",
):
    """Train with a TorchTrainer; returns Ray Train's ``Result`` (final metrics, last
    checkpoint).

    ``name`` must be stable for a given run so that a retried run finds its checkpoints
    and resumes. ``in_tune``: forward each report but the last to the surrounding Tune
    trial, which reports the returned final metrics itself once the trainer is done.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    callbacks = [_report_to_tune_before_last(config.train.epochs)] if in_tune else []
    # each worker asks for resources.<kind> (final, or trial for a multi-worker trial)
    per_worker = resources_of(config, kind)
    use_gpu = per_worker.get("GPU", 0) > 0
    # Ray Train gives a worker group 60 s to start, then fails it; workers that import
    # torch on a busy node (finals started together, two searches on one machine) are
    # slow, not lost: they get the search's own bound (Ray Train passes this on to its
    # controller; 0, wait forever, is a day)
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", str(config.search.resource_wait_s or 86400))
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "config": config.to_dict(),
            "class_weights": class_weights,
            "use_synthetic": use_synthetic,
            "evaluate_test": evaluate_test,
            "checkpoint": checkpoint,
            "context": context,
        },
        scaling_config=ScalingConfig(num_workers=config.train.workers, use_gpu=use_gpu, resources_per_worker=per_worker),
        # NCCL needs CUDA on the workers; a node that declares GPUs without CUDA gets gloo
        torch_config=TorchConfig(backend="nccl" if use_gpu and gpus_have_cuda(per_worker["GPU"]) else "gloo"),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage_path),
            callbacks=callbacks,
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            # inside a Tune trial, Tune retries (search.max_failures) and the retried trial's
            # trainer resumes from this run's checkpoint; retrying here as well would run a
            # NaN trial (max_failures + 1) x 3 times
            failure_config=FailureConfig(max_failures=0 if in_tune else 2),
            logging_config=train_logging_config(),  # Ray Train's chatter off the console (raysynth.logs)
        ),
    )
    return trainer.fit()
