"""Training: the plain-torch loop (no Ray inside) and its Ray Train wrapper."""

from raysynth.train.loop import EpochMetrics, TrainData, evaluate, train_few_shot

__all__ = ["EpochMetrics", "TrainData", "evaluate", "train_few_shot"]
