"""The leaderboard on real MLflow runs: filtered, ordered and cut by the store (not the
client), across experiments, with pruned and failed trials where asked."""

from mlflow.tracking import MlflowClient

from raysynth.tracking.leaderboard import leaderboard_rows
from raysynth.tracking.mlflow_runs import KIND_TAG, STATUS_TAG


def _store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    trials = {
        "a": [("finished", 0.70), ("finished", 0.95), ("pruned", 0.99), ("failed", 1.0)],
        "b": [("finished", 0.90), ("finished", 0.60)],
    }
    for name, runs in trials.items():
        exp = client.create_experiment(name)
        for status, val_acc in runs:
            run = client.create_run(exp, tags={KIND_TAG: "trial", STATUS_TAG: status, "raysynth.dataset": "digits"}).info.run_id
            client.log_metric(run, "val_acc", val_acc)
            client.log_param(run, "train.lr", 0.002)
        client.create_run(exp, tags={KIND_TAG: "search"})  # a parent run is not a trial
    return uri


def test_rows_come_ordered_and_cut_from_the_store(tmp_path):
    uri = _store(tmp_path)
    assert [r["val_acc"] for r in leaderboard_rows(uri, None)] == [0.95, 0.90, 0.70, 0.60]
    assert [r["val_acc"] for r in leaderboard_rows(uri, None, top=2)] == [0.95, 0.90]
    assert [r["val_acc"] for r in leaderboard_rows(uri, "a", include_pruned=True)] == [0.99, 0.95, 0.70]
    assert [r["val_acc"] for r in leaderboard_rows(uri, "b", ascending=True)] == [0.60, 0.90]
    assert {r["experiment"] for r in leaderboard_rows(uri, None)} == {"a", "b"}
    assert leaderboard_rows(uri, None, tags={"dataset": "cub"}) == []
