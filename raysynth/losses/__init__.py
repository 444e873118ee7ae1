"""Training objectives, one file each, registered by name (see :mod:`raysynth.losses.base`).

Public functions (stable names): ``unicon_loss``, ``supcon_loss`` (UniCon eq. 3 and
SupCon), ``bound_loss``, ``discrepancy_term``, ``robustness_term`` (ICML 2025 eq. 7),
``kmeans_partition``, ``OnlineKMeans`` (partitions), ``simplex_etf``, ``sync_loss``
(SyNC), ``PrototypeHead``, ``ntce_loss``, ``nonl_loss`` (prototype classifiers).
"""

from raysynth.losses.base import OBJECTIVES, LossBatch, Objective, parse_loss, register_objective
from raysynth.losses.bound import bound_loss, discrepancy_term, robustness_term
from raysynth.losses.partition import OnlineKMeans, kmeans_partition
from raysynth.losses.prototypes import PrototypeHead, class_mean_prototypes, nonl_loss, ntce_loss
from raysynth.losses.sync import simplex_etf, sync_loss
from raysynth.losses.unicon import supcon_loss, unicon_loss
from raysynth.losses.weighted_ce import soft_cross_entropy, weighted_synthetic_ce

__all__ = [
    "OBJECTIVES",
    "LossBatch",
    "Objective",
    "OnlineKMeans",
    "PrototypeHead",
    "bound_loss",
    "class_mean_prototypes",
    "discrepancy_term",
    "kmeans_partition",
    "nonl_loss",
    "ntce_loss",
    "parse_loss",
    "register_objective",
    "robustness_term",
    "simplex_etf",
    "soft_cross_entropy",
    "supcon_loss",
    "sync_loss",
    "unicon_loss",
    "weighted_synthetic_ce",
]
