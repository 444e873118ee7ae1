"""Training: the plain-torch loop (no Ray inside), one run's setup (``session``), and its
Ray Train wrapper (``ray_train``)."""

from raysynth.config import Config, ConfigError
from raysynth.losses import parse_loss
from raysynth.train.loop import EpochMetrics, TrainData, TrainResult, train_few_shot


def check(config: Config) -> None:
    """The train section against the objectives: two-stage needs a representation objective."""
    objectives = parse_loss(config.loss)
    if config.train.protocol == "two_stage" and not any(o.representation for o in objectives):
        raise ConfigError("train.protocol: 'two_stage' needs a representation objective in loss (unicon, supcon or sync)")
    steps = config.train.steps_per_epoch
    if isinstance(steps, str) and steps != "pass" or isinstance(steps, int) and steps < 1:
        raise ConfigError(f"train.steps_per_epoch: must be an integer >= 1 or 'pass', got {steps!r}")
    hard = [o.name for o in objectives if not o.mixes_labels]
    if config.train.mix != "none" and hard:
        raise ConfigError(f"train.mix: CutMix/Mixup give soft labels; objective '{hard[0]}' needs hard ones (use ce or bound)")


__all__ = ["EpochMetrics", "TrainData", "TrainResult", "check", "train_few_shot"]
