"""MLflow tracking: parent run per search, child run per trial, leaderboard."""

from raysynth.tracking.mlflow_runs import TrialTracker, log_params
from raysynth.tracking.stores import default_tracking_uri

__all__ = ["TrialTracker", "default_tracking_uri", "log_params"]
