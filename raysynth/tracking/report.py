"""The story of a search, as files: plots, the best config, a static HTML report.

:func:`write_search_report` writes everything into one directory, which the driver logs
as the parent run's artifacts. The HTML embeds its images (base64), so the single file
opens anywhere — from MLflow's artifact view, a download, or a mail attachment.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raysynth.tracking import plots


@dataclass
class SearchStory:
    """What the report shows, collected by the driver at the end of a search."""

    title: str
    summary_text: str  # the one-screen terminal summary
    classes: list[str]
    best_weights: list[float] | None
    top_weights: list[float] | None
    quality_labels: list[str]  # per class: the configured label or the measured q_c
    real_images: list[np.ndarray]  # per class, N×3×H×W in [0, 1]
    synthetic_images: list[np.ndarray]
    trial_scores: list[float]  # in trial order
    trial_finished: list[bool]
    trial_params: list[dict[str, float]] = field(default_factory=list)  # finished trials, numeric params + val_acc
    confusion: list[list[int]] | None = None
    best_config_yaml: str = ""
    finals: list[dict[str, Any]] = field(default_factory=list)
    importances: dict[str, float] = field(default_factory=dict)  # Optuna's fANOVA, optuna searchers only


def write_search_report(story: SearchStory, out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Path]] = []
    if story.best_weights is not None:
        figures.append(("Learned per-class weights", plots.plot_weights(
            story.classes, story.best_weights, story.quality_labels, out / "weights.png", story.top_weights)))
    if story.synthetic_images:
        figures.append(("Real vs synthetic images per class", plots.plot_image_grid(
            story.classes, story.real_images, story.synthetic_images, story.best_weights, out / "real_vs_synthetic.png")))
    if story.confusion is not None:
        figures.append(("Confusion matrix of the best model on test", plots.plot_confusion(
            story.confusion, story.classes, out / "confusion_matrix.png")))
    if story.trial_scores:
        figures.append(("Optimisation history", plots.plot_history(
            story.trial_scores, story.trial_finished, out / "history.png")))
    if len(story.trial_params) >= 2:
        figures.append(("Hyperparameters (parallel coordinates)", plots.plot_parallel(
            story.trial_params, "val_acc", out / "parallel_coordinates.png")))  # fmt: skip
    if story.importances:
        figures.append(("Parameter importance (Optuna, fANOVA)", plots.plot_importances(
            story.importances, out / "param_importance.png")))
    (out / "best_config.yaml").write_text(story.best_config_yaml)
    (out / "summary.txt").write_text(story.summary_text + "\n")
    report = out / "report.html"
    report.write_text(_html(story, figures))
    return [p for _, p in figures] + [out / "best_config.yaml", out / "summary.txt", report]


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _html(story: SearchStory, figures: list[tuple[str, Path]]) -> str:
    finals = "".join(
        f"<tr><td>{html.escape(f['label'])}</td><td>{f['test_acc']:.4f} ± {f['test_acc_std']:.4f}</td><td>{f['val_acc']:.4f}</td></tr>"
        for f in story.finals
    )
    sections = "".join(f"<h2>{html.escape(title)}</h2>{_img(path)}" for title, path in figures)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(story.title)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}
pre{{background:#f6f6f6;padding:1em;overflow-x:auto}}img{{max-width:100%;border:1px solid #ddd}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px}}</style></head>
<body><h1>{html.escape(story.title)}</h1>
<h2>Summary</h2><pre>{html.escape(story.summary_text)}</pre>
<h2>Test accuracy (after the search, test split read once per model)</h2>
<table><tr><th>model</th><th>test accuracy (mean ± std over seeds)</th><th>val accuracy</th></tr>{finals}</table>
{sections}
<h2>Best configuration (re-run with <code>--space best_config.yaml</code>)</h2><pre>{html.escape(story.best_config_yaml)}</pre>
<script type="application/json" id="raysynth-data">{html.escape(json.dumps({"classes": story.classes, "weights": story.best_weights}))}</script>
</body></html>
"""
