"""The plots logged on a search's parent run (matplotlib, Agg backend, PNG).

Each function takes plain data and a path and writes one figure; none needs MLflow or
Ray, so they are testable on their own and reusable from a notebook.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_weights(classes: list[str], weights: list[float], quality: list[str], path: Path, top: list[float] | None = None) -> Path:
    """Learned per-class weights, each bar labelled with the class's quality (a label
    such as 'counter' or a measured fidelity score)."""
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(classes) + 2), 3.6))
    x = np.arange(len(classes))
    width = 0.4 if top else 0.7
    ax.bar(x - (width / 2 if top else 0), weights, width, label="best trial", color="#3b75af")
    if top:
        ax.bar(x + width / 2, top, width, label="top-quarter mean", color="#9ecae1")
    ax.set_xticks(x, [f"{c}\n({q})" for c, q in zip(classes, quality)], fontsize=8, rotation=0 if len(classes) <= 10 else 90)
    ax.set_ylim(0, max(1.0, max(weights + (top or [0])) * 1.1))
    ax.set_ylabel("weight of synthetic data w_c")
    ax.set_title("Learned per-class weights (quality in brackets)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_image_grid(classes: list[str], real: list[np.ndarray], synthetic: list[np.ndarray], weights: list[float] | None, path: Path, per_class: int = 4) -> Path:
    """UniCon Figure 3: per class, real images on the left, synthetic on the right, w_c.

    ``real[c]`` / ``synthetic[c]``: arrays N×3×H×W in [0, 1] of class c.
    """
    rows = len(classes)
    fig, axes = plt.subplots(rows, 2 * per_class, figsize=(2 * per_class * 0.9, rows * 1.0 + 0.4), squeeze=False)
    for r, c in enumerate(classes):
        for j in range(2 * per_class):
            ax = axes[r][j]
            ax.axis("off")
            source = real[r] if j < per_class else synthetic[r]
            k = j if j < per_class else j - per_class
            if k < len(source):
                ax.imshow(np.clip(np.transpose(source[k], (1, 2, 0)), 0, 1))
        w = f"  w={weights[r]:.2f}" if weights is not None else ""
        axes[r][0].set_title(f"{c}: real", fontsize=7, loc="left")
        axes[r][per_class].set_title(f"synthetic{w}", fontsize=7, loc="left")
    return _save(fig, path)


def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path, title: str = "Best model on test") -> Path:
    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(classes) + 2), max(3.5, 0.45 * len(classes) + 1.5)))
    ax.imshow(m, cmap="Blues")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=90 if len(classes) > 10 else 0, fontsize=7)
    ax.set_yticks(ticks, classes, fontsize=7)
    if len(classes) <= 20:
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7, color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)


def plot_history(scores: list[float], finished: list[bool], path: Path) -> Path:
    """Validation accuracy per trial (hollow: stopped early by ASHA) and best-so-far of
    the finished trials."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    x = np.arange(1, len(scores) + 1)
    s = np.asarray(scores, dtype=float)
    f = np.asarray(finished, dtype=bool)
    ax.scatter(x[f], s[f], s=18, color="#3b75af", label="finished")
    ax.scatter(x[~f], s[~f], s=18, facecolors="none", edgecolors="#999999", label="stopped by ASHA")
    best, line = -math.inf, []
    for value, full in zip(s, f):
        if full and value > best:
            best = value
        line.append(best if best > -math.inf else np.nan)
    ax.step(x, line, where="post", color="#d62728", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Optimisation history")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_parallel(rows: list[dict[str, float]], metric: str, path: Path, max_params: int = 8) -> Path:
    """Parallel coordinates of the main (numeric) hyperparameters, coloured by ``metric``;
    each axis is min-max scaled (log for ranges spanning > 2 decades)."""
    keys = [k for k in rows[0] if k != metric and all(isinstance(r.get(k), (int, float)) for r in rows)][:max_params]
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * (len(keys) + 1)), 3.6))
    values = np.array([[float(r[k]) for k in keys] + [float(r[metric])] for r in rows])
    scaled = np.zeros_like(values)
    for j in range(values.shape[1]):
        col = values[:, j]
        if col.min() > 0 and col.max() / col.min() > 100:
            col = np.log10(col)
        span = col.max() - col.min()
        scaled[:, j] = (col - col.min()) / span if span > 0 else 0.5
    order = np.argsort(values[:, -1])
    cmap = plt.get_cmap("viridis")
    lo, hi = values[:, -1].min(), values[:, -1].max()
    for i in order:
        ax.plot(range(len(keys) + 1), scaled[i], color=cmap((values[i, -1] - lo) / (hi - lo) if hi > lo else 0.5), alpha=0.7)
    ax.set_xticks(range(len(keys) + 1), keys + [metric], rotation=30, fontsize=7, ha="right")
    ax.set_yticks([])
    ax.set_title(f"Hyperparameters of the trials (colour: {metric})")
    return _save(fig, path)


def plot_importances(importances: dict[str, float], path: Path) -> Path:
    """Horizontal bars: each searched parameter's share of the variance of val_acc."""
    names = list(importances)[::-1]  # most important on top
    fig, ax = plt.subplots(figsize=(5.5, 0.35 * len(names) + 1.2))
    ax.barh(names, [importances[n] for n in names], color="#4c72b0")
    ax.set_xlabel("importance (fANOVA)")
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title("What mattered for validation accuracy")
    return _save(fig, path)
