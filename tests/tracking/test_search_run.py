"""The parent run of a search: opened once and adopted again on --resume; trials a killed
driver started but Ray Tune never recorded are removed once the resumed search ends."""

from conftest import REPO
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from raysynth.tracking.mlflow_runs import KIND_TAG, PARENT_TAG
from raysynth.tracking.search_run import SearchRun
from raysynth.validate import load_config


def test_resume_adopts_the_parent_and_lost_trials_are_deleted(tmp_path):
    config = load_config(REPO / "search_spaces" / "digits.yaml")
    uri, record = f"sqlite:///{tmp_path / 'm.db'}", tmp_path / "tune" / "s" / "parent.json"
    first = SearchRun.open(uri, "exp", config, "s", record, "fp", resume=False)
    client = MlflowClient(uri)
    tags = {KIND_TAG: "trial", PARENT_TAG: first.run_id}
    done = client.create_run(first.experiment_id, tags={**tags, "raysynth.trial_id": "a"}).info.run_id
    client.set_terminated(done, "FINISHED")
    lost = client.create_run(first.experiment_id, tags={**tags, "raysynth.trial_id": "b"}).info.run_id  # driver killed

    resumed = SearchRun.open(uri, "exp", config, "s", record, "fp", resume=True)
    assert resumed.run_id == first.run_id and client.get_run(first.run_id).info.status == "RUNNING"
    assert resumed.discard_lost_trials() == 1
    active = {r.info.run_id for r in client.search_runs([first.experiment_id])}
    assert done in active and lost not in active
    deleted = client.search_runs([first.experiment_id], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [lost]  # kept in MLflow's trash, restorable
    again = SearchRun.open(uri, "exp", config, "s", record, "fp", resume=False)
    assert again.run_id != first.run_id  # without --resume: a new parent run
