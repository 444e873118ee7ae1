"""The final-retraining path: Ray Train, checkpoints, test evaluated once, resume."""

from raysynth.train.ray_train import fit_with_trainer
from raysynth.train.task import prepare


def test_final_training_checkpoints_and_resumes(ray_session, tiny_config, tmp_path):
    prepare(tiny_config)
    first = fit_with_trainer(tiny_config, [1.0] * 5, True, name="final-best", storage_path=tmp_path, evaluate_test=True)
    assert first["epoch"] == tiny_config.train.epochs and 0.0 <= first["test_acc"] <= 1.0
    checkpoints = sorted(p for p in (tmp_path / "final-best").glob("checkpoint_*") if p.is_dir())
    assert checkpoints and (checkpoints[-1] / "state.pt").is_file()
    # same name: Ray Train resumes from the last checkpoint instead of training again
    again = fit_with_trainer(tiny_config, [1.0] * 5, True, name="final-best", storage_path=tmp_path, evaluate_test=True)
    assert again["test_acc"] == first["test_acc"] and again["epoch"] == first["epoch"]
