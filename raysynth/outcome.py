"""How a trial ended — one rule, used by the searchers, the results, the progress lines
and the MLflow runs alike.

* **failed**: it raised (after its retries), or reported nothing;
* **finished**: it reported its last epoch (``train.epochs``);
* **pruned**: a scheduler (ASHA) stopped it earlier: its value is of a lower fidelity and
  is not compared with finished trials'.
"""

from __future__ import annotations

from typing import Any

FINISHED, PRUNED, FAILED = "finished", "pruned", "failed"


def trial_outcome(metrics: dict[str, Any] | None, max_epochs: int, error: bool = False, metric: str = "val_acc") -> str:
    """``failed``, ``finished`` or ``pruned`` for a trial's last reported ``metrics``
    (``metric``: the search's objective, ``search.metric``)."""
    if error or not metrics or metric not in metrics:
        return FAILED
    return completed_outcome(int(metrics.get("epoch", 0)), max_epochs)


def completed_outcome(last_epoch: int, max_epochs: int) -> str:
    """A trial that ended without error, by the last epoch it reported: ``finished`` or
    ``pruned``."""
    return FINISHED if last_epoch >= max_epochs else PRUNED


def result_outcome(result, max_epochs: int) -> str:
    """:func:`trial_outcome` of a Ray Tune ``Result``."""
    return trial_outcome(result.metrics, max_epochs, error=result.error is not None)
