"""The final-retraining path: Ray Train, checkpoints, test evaluated once, resume."""

from raysynth.prepare import prepare
from raysynth.train.ray_train import fit_with_trainer


def test_final_training_checkpoints(ray_session, tiny_config, tmp_path):
    prepare(tiny_config)
    first = fit_with_trainer(tiny_config, [1.0] * 5, True, name="final-best", storage_path=tmp_path, evaluate_test=True)
    assert first["epoch"] == tiny_config.train.epochs and 0.0 <= first["test_acc"] <= 1.0
    assert 0.0 <= first["val_acc"] <= 1.0 and "test_confusion" in first
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
    prepare(config)
    first = fit_with_trainer(config, [1.0, 1.0, 0.0, 0.5, 1.0], True, name="final-unicon", storage_path=tmp_path, evaluate_test=True)
    assert 0.0 <= first["test_acc"] <= 1.0 and first["val_acc_std"] >= 0.0
    assert "loss_contrastive" in first
    again = fit_with_trainer(config, [1.0, 1.0, 0.0, 0.5, 1.0], True, name="final-unicon", storage_path=tmp_path, evaluate_test=True)
    assert again["test_acc"] == first["test_acc"] and again["val_acc"] == first["val_acc"]
