"""CLIP filter rules, applied when a trial loads a pool (the scores are stored at
generation time by :mod:`raysynth.generators.filtering`), so thresholds can be searched
without generating again: ``bottom`` drops the lowest ``fraction`` of each class by
``clip_score`` (the confidence filter), ``mismatch`` drops images CLIP assigns to
another class (the classification filter).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from raysynth.config import ConfigError


def keep_mask(manifest: pd.DataFrame, rule: str, fraction: float = 0.2) -> np.ndarray:
    """Boolean mask of the images a filter rule keeps."""
    n = len(manifest)
    if rule == "none":
        return np.ones(n, dtype=bool)
    if "clip_score" not in manifest:
        raise ConfigError(f"pool.filter: '{rule}' needs CLIP scores, but the pool has none (set pool.clip_model)")
    if rule == "mismatch":
        return (manifest["clip_pred"] == manifest["target_class"]).to_numpy()
    if rule == "bottom":
        keep = np.ones(n, dtype=bool)
        for _, rows in manifest.groupby("target_class").indices.items():
            drop = int(np.floor(fraction * len(rows)))
            if drop:
                # stable order: ties dropped by position, the same on every load
                order = np.argsort(manifest["clip_score"].to_numpy()[rows], kind="stable")
                keep[rows[order[:drop]]] = False
        return keep
    raise ConfigError(f"pool.filter: must be 'none', 'bottom' or 'mismatch', got '{rule}'")
