"""Training objectives, one file each."""

from raysynth.losses.weighted_ce import soft_cross_entropy, weighted_synthetic_ce

__all__ = ["soft_cross_entropy", "weighted_synthetic_ce"]
