"""Preparation: everything a search makes once, before its trials — the backbone, the
pools, the partitions, the per-class quality, fine-tuned generators — and the
:class:`raysynth.context.RunContext` that names them for the trials."""

from raysynth.prepare.run import Plan, on_cluster, prepare

__all__ = ["Plan", "on_cluster", "prepare"]
