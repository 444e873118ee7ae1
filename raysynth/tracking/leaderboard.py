"""``raysynth leaderboard``: finished trials across searches and datasets, sorted by any
metric (validation accuracy by default), filtered by experiment and tags; and a compare
mode that puts two runs side by side."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from mlflow.tracking import MlflowClient

from raysynth.config import ConfigError
from raysynth.tracking.mlflow_runs import KIND_TAG, PARENT_TAG, STATUS_TAG


def _experiments(client: MlflowClient, tracking_uri: str, experiment: str | None) -> list[str]:
    if experiment is None:
        return [e.experiment_id for e in client.search_experiments()]
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ConfigError(f"--experiment: no MLflow experiment named '{experiment}' in {tracking_uri}")
    return [exp.experiment_id]


def _tag_filter(tags: dict[str, str] | None) -> str:
    parts = [f"tags.`{KIND_TAG}` = 'trial'"]
    for key, value in (tags or {}).items():
        if "'" in key + value or "`" in key:
            raise ConfigError(f"--tag: quotes are not allowed in '{key}={value}'")
        full = key if key.startswith(("raysynth.", "mlflow.")) else f"raysynth.{key}"
        parts.append(f"tags.`{full}` = '{value}'")
    return " and ".join(parts)


def leaderboard_rows(
    tracking_uri: str,
    experiment: str | None,
    top: int | None = None,
    include_pruned: bool = False,
    metric: str = "val_acc",
    tags: dict[str, str] | None = None,
    ascending: bool = False,
) -> list[dict[str, Any]]:
    """Trials of ``experiment`` (every experiment if None) with ``tags`` (``dataset=digits``
    means the tag ``raysynth.dataset``), sorted by ``metric``, best first."""
    client = MlflowClient(tracking_uri)
    ids = _experiments(client, tracking_uri, experiment)
    # filtered, ordered and cut on the server: a store with many searches sends back only
    # the rows asked for
    status = f"tags.`{STATUS_TAG}` != 'failed'" if include_pruned else f"tags.`{STATUS_TAG}` = 'finished'"
    query = f"{_tag_filter(tags)} and {status} and metrics.`{metric}` >= -1e30"
    order = [f"metrics.`{metric}` {'ASC' if ascending else 'DESC'}", "attributes.start_time ASC"]
    runs = []
    token = None
    while ids:
        want = min(1000, top - len(runs)) if top else 1000
        page = client.search_runs(ids, filter_string=query, order_by=order, max_results=want, page_token=token)
        runs.extend(page)
        token = page.token
        if not token or (top and len(runs) >= top):
            break
    names = {e.experiment_id: e.name for e in client.search_experiments()} if experiment is None else {}
    rows = []
    for run in runs:
        row = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "search": run.data.tags.get(PARENT_TAG, ""),
            "status": run.data.tags.get(STATUS_TAG),
            metric: run.data.metrics[metric],
        }
        if experiment is None:
            row["experiment"] = names.get(run.info.experiment_id, run.info.experiment_id)
        row.update(dict(sorted(run.data.params.items())))
        rows.append(row)
    return rows


def compare_runs(tracking_uri: str, run_a: str, run_b: str, all_fields: bool = False) -> list[dict[str, Any]]:
    """Rows (field, a, b) of two runs' params, metrics and raysynth tags; only the fields
    that differ unless ``all_fields``."""
    client = MlflowClient(tracking_uri)
    runs = []
    for run_id in (run_a, run_b):
        try:
            runs.append(client.get_run(run_id))
        except Exception:
            raise ConfigError(f"--compare: no run '{run_id}' in {tracking_uri}") from None
    a, b = runs
    rows = []
    for kind, get in (("metric", lambda r: r.data.metrics), ("param", lambda r: r.data.params), ("tag", lambda r: {k: v for k, v in r.data.tags.items() if k.startswith("raysynth.")})):
        keys = sorted(set(get(a)) | set(get(b)))
        for k in keys:
            va, vb = get(a).get(k, ""), get(b).get(k, "")
            if all_fields or va != vb:
                rows.append({"field": f"{kind}:{k}", a.info.run_name or run_a: va, b.info.run_name or run_b: vb})
    return rows


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    try:
        f = float(value)
        return f"{f:.4g}" if "." in str(value) or "e" in str(value) else str(value)
    except (TypeError, ValueError):
        return str(value)


def format_rows(rows: list[dict[str, Any]], fmt: str, numbered: bool = True) -> str:
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
        return "(no finished trials)" if numbered else "(no differences)"
    shown = [c for c in columns if c not in ("run_id", "search")]
    if numbered:
        table = [["#"] + shown] + [[str(i + 1)] + [_short(r.get(c, "")) for c in shown] for i, r in enumerate(rows)]
    else:
        table = [shown] + [[_short(r.get(c, "")) for c in shown] for r in rows]
    widths = [max(len(line[j]) for line in table) for j in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
