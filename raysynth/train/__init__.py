"""Training: the plain-torch loop (no Ray inside), one run's setup (``session``), and its
Ray Train wrapper (``ray_train``)."""

from raysynth.config import Config, ConfigError
from raysynth.losses import parse_loss
from raysynth.train.loop import EpochMetrics, TrainData, TrainResult, train_few_shot


def check(config: Config) -> None:
    """The train section against the objectives: two-stage needs a representation objective."""
    if config.train.protocol == "two_stage" and not any(o.representation for o in parse_loss(config.loss)):
        raise ConfigError("train.protocol: 'two_stage' needs a representation objective in loss (unicon, supcon or sync)")


__all__ = ["EpochMetrics", "TrainData", "TrainResult", "check", "train_few_shot"]
