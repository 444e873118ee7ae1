"""``raysynth leaderboard``: finished trials of an experiment, best validation accuracy first."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from mlflow.tracking import MlflowClient

from raysynth.config import ConfigError
from raysynth.tracking.mlflow_runs import KIND_TAG, PARENT_TAG, STATUS_TAG


def leaderboard_rows(
    tracking_uri: str, experiment: str, top: int | None = None, include_pruned: bool = False, metric: str = "val_acc"
) -> list[dict[str, Any]]:
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ConfigError(f"--experiment: no MLflow experiment named '{experiment}' in {tracking_uri}")
    statuses = ("finished", "pruned") if include_pruned else ("finished",)
    query = f"tags.`{KIND_TAG}` = 'trial'"
    runs = []
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], filter_string=query, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    rows = []
    for run in runs:
        if run.data.tags.get(STATUS_TAG) not in statuses or metric not in run.data.metrics:
            continue
        row = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "search": run.data.tags.get(PARENT_TAG, ""),
            "status": run.data.tags.get(STATUS_TAG),
            metric: run.data.metrics[metric],
        }
        row.update(dict(sorted(run.data.params.items())))
        rows.append(row)
    rows.sort(key=lambda r: r[metric], reverse=True)
    return rows[:top] if top else rows


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    try:
        f = float(value)
        return f"{f:.4g}" if "." in str(value) or "e" in str(value) else str(value)
    except (TypeError, ValueError):
        return str(value)


def format_rows(rows: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2)
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    if not rows:
        return "(no finished trials)"
    shown = [c for c in columns if c not in ("run_id", "search")]
    table = [["#"] + shown] + [[str(i + 1)] + [_short(r.get(c, "")) for c in shown] for i, r in enumerate(rows)]
    widths = [max(len(line[j]) for line in table) for j in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
