"""Training objectives, one file each, registered by name (see :mod:`raysynth.losses.base`);
adding an objective is adding a file to this folder.

Public functions (stable names): ``unicon_loss`` (UniCon eq. 3), ``supcon_loss`` (SupCon),
``bound_loss``, ``discrepancy_term``, ``robustness_term`` (ICML 2025 eq. 7),
``kmeans_partition``, ``OnlineKMeans`` (partitions), ``simplex_etf``, ``sync_loss``
(SyNC), ``PrototypeHead``, ``ntce_loss``, ``nonl_loss`` (prototype classifiers).
"""

from raysynth.config import Config
from raysynth.losses.base import OBJECTIVES, LossBatch, Objective, parse_loss, register_objective
from raysynth.losses.bound import bound_loss, discrepancy_term, robustness_term
from raysynth.losses.ce import soft_cross_entropy, weighted_synthetic_ce
from raysynth.losses.partition import OnlineKMeans, kmeans_partition
from raysynth.losses.prototypes import PrototypeHead, class_mean_prototypes, nonl_loss, ntce_loss
from raysynth.losses.supcon import supcon_loss
from raysynth.losses.sync import simplex_etf, sync_loss
from raysynth.losses.unicon import unicon_loss
from raysynth.registry import import_modules

import_modules(__name__)  # objectives in files not named above register too


def check(config: Config) -> None:
    """The loss section: registered objectives with valid parameters."""
    parse_loss(config.loss)


__all__ = [
    "OBJECTIVES", "LossBatch", "Objective", "OnlineKMeans", "PrototypeHead", "bound_loss", "check",
    "class_mean_prototypes", "discrepancy_term", "kmeans_partition", "nonl_loss", "ntce_loss", "parse_loss",
    "register_objective", "robustness_term", "simplex_etf", "soft_cross_entropy", "supcon_loss", "sync_loss",
    "unicon_loss", "weighted_synthetic_ce",
]
