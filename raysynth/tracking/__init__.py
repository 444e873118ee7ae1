"""MLflow tracking: parent run per search, child run per trial, leaderboard."""

from raysynth.tracking.mlflow_runs import TrialTracker, default_tracking_uri, log_params

__all__ = ["TrialTracker", "default_tracking_uri", "log_params"]
