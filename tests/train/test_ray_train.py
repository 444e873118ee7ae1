"""The final-retraining path: Ray Train, checkpoints, test evaluated once, resume."""

import json
import math

import pytest
import torch

from raysynth.prepare import prepare
from raysynth.train.ray_train import train_with_trainer


def test_final_training_checkpoints(ray_session, tiny_config, tmp_path):
    context = prepare(tiny_config)
    result = train_with_trainer(tiny_config, [1.0] * 5, context, True, name="final-best", storage_path=tmp_path, evaluate_test=True)
    first = result.metrics
    assert first["epoch"] == tiny_config.train.epochs
    # one classifier: its test accuracy is its confusion matrix's trace over the test size
    confusion = torch.tensor(json.loads(first["test_confusion"]))
    assert confusion.shape == (5, 5) and int(confusion.sum()) == len(context.split().test.labels)
    assert first["test_acc"] == pytest.approx(float(confusion.trace() / confusion.sum()))
    assert first["test_acc_std"] == 0.0 and first["val_acc"] * len(context.split().val.labels) == pytest.approx(
        round(first["val_acc"] * len(context.split().val.labels)))
    checkpoints = sorted(p for p in (tmp_path / "final-best").glob("checkpoint_*") if p.is_dir())
    assert checkpoints and (checkpoints[-1] / "state.pt").is_file()


def test_two_stage_unicon_final_training_reports_the_mean_over_classifiers_and_resumes(ray_session, tiny_config, tmp_path):
    """UniCon's protocol through Ray Train: n_contr encoders, n_classif probes each; the
    probes are part of the checkpoint, so a resumed run (same name: Ray Train resumes
    from the last checkpoint instead of training again) scores the same classifiers."""
    import dataclasses

    config = dataclasses.replace(
        tiny_config,
        loss={"unicon": {"temperature": 0.1}},
        train=dataclasses.replace(tiny_config.train, n_contr=2, n_classif=2, probe_steps=20),
    )
    context = prepare(config)
    first = train_with_trainer(config, [1.0, 1.0, 0.0, 0.5, 1.0], context, True, name="final-unicon", storage_path=tmp_path, evaluate_test=True).metrics
    # the mean over 2 encoders x 2 probes: four accuracies, each a multiple of 1/|test|
    n_test = len(context.split().test.labels)
    assert first["test_acc"] * 4 * n_test == pytest.approx(round(first["test_acc"] * 4 * n_test), abs=1e-3)  # float32 sums
    assert first["loss_contrastive"] > 0.0 and math.isfinite(first["loss_contrastive"])
    again = train_with_trainer(config, [1.0, 1.0, 0.0, 0.5, 1.0], context, True, name="final-unicon", storage_path=tmp_path, evaluate_test=True).metrics
    assert again["test_acc"] == first["test_acc"] and again["val_acc"] == first["val_acc"]
