"""The mission's joint search: per-class (grouped) weights, lambda1 (lambda2 tied), K, Diff-Mix
strength (named strength sets) and gamma in one space (search_spaces/digits-joint.yaml)."""

from conftest import REPO, tiny_overrides
from mlflow.tracking import MlflowClient

from raysynth.context import QualityRequest, WeightContext
from raysynth.search.space import apply_params, parse_space
from raysynth.tracking.mlflow_runs import KIND_TAG
from raysynth.validate import load_config

CLASSES = ["five", "six", "seven", "eight", "nine"]
JOINT = REPO / "search_spaces" / "digits-joint.yaml"


def test_a_trial_gets_its_strength_sets_pool_and_that_pools_groups():
    config = load_config(JOINT)
    space = parse_space(config.search.space, config)
    assert {d.name for d in space.dimensions} >= {"loss.bound.lam1", "loss.bound.lam2", "partition.clusters_per_class", "pool.strengths", "pool.gamma"}
    plan = space.plan(config)  # what the driver prepares before the trials
    assert [p.strengths for p in plan.pools] == [[0.5, 0.7, 0.9], [0.9]]  # one pool per named set
    assert plan.clusters == [1.0, 2.0, 4.0] and plan.quality == QualityRequest(groups=3, by="quality")
    assert plan.pool_param == "pool.strengths" and plan.pool_values == ["diffmix", "strong"]
    # the quality is measured on every pool: each trial's groups are its own pool's
    context = WeightContext(groups=[0, 1, 2, 0, 1], pool_param=plan.pool_param, by_pool={
        "diffmix": WeightContext(groups=[0, 1, 2, 0, 1]), "strong": WeightContext(groups=[2, 2, 1, 1, 0])})
    params = {"pool.strengths": "strong", "pool.gamma": 1.0, "loss.bound.lam1": 20.0, "partition.clusters_per_class": 4.0,
              "w_group": {"g0": 0.1, "g1": 0.5, "g2": 0.9}}
    trial, weights = apply_params(config, params, CLASSES, context, space)
    assert trial.pool.strengths == [0.9] and trial.pool.gamma == 1.0 and trial.loss["bound"]["lam2"] == 200.0
    assert trial.partition.clusters_per_class == 4.0 and weights == [0.9, 0.9, 0.5, 0.5, 0.1]
    _, weights = apply_params(config, {**params, "pool.strengths": "diffmix"}, CLASSES, context, space)
    assert weights == [0.1, 0.5, 0.9, 0.1, 0.5]


def test_the_joint_search_runs_end_to_end_on_the_embedded_task(ray_session, tmp_path):
    """All five kinds searched at once, on the session's Ray: every trial ran with a pool of
    its own strength set, its own K and lambda1, and the summary names what it learned."""
    from raysynth.search.options import SearchOptions
    from raysynth.search.run import run_search

    config = load_config(JOINT, tiny_overrides() + [
        "train.epochs=1", "search.trials=4", "search.initial_points=4", "search.final_eval=false", "partition.niter=20",
        "search.space.partition.clusters_per_class={type: choice, values: [1.0, 2.0]}"])
    options = SearchOptions(f"sqlite:///{tmp_path / 'mlflow.db'}", "joint", tmp_path / "tune", "joint")
    summary = run_search(config, options)
    assert summary.trials == 4
    client = MlflowClient(options.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("joint").experiment_id])
    trials = [r.data.params for r in runs if r.data.tags.get(KIND_TAG) == "trial"]
    assert len(trials) == 4
    for p in trials:
        assert p["pool.strengths"] in ("diffmix", "strong") and float(p["loss.bound.lam1"]) in (0.1, 2.0, 20.0, 50.0)
        assert {"partition.clusters_per_class", "pool.gamma", "w_group/g0", "w_group/g2"} <= set(p)
    assert {"pool.strengths", "pool.gamma", "loss.bound.lam1", "partition.clusters_per_class"} <= set(summary.best_params)
    assert len(summary.best_weights) == 5 and all(0.0 <= w <= 1.0 for w in summary.best_weights)


def test_cub_joint_searches_the_same_five_kinds_over_three_pools():
    from raysynth.config import parse_config

    config = parse_config(REPO / "search_spaces" / "cub-joint.yaml")
    space = parse_space(config.search.space, config)
    assert space.weights.name == "grouped" and space.weights.quality_request() is not None
    assert {d.name for d in space.dimensions} >= {"loss.bound.lam1", "partition.clusters_per_class", "pool.strengths", "pool.gamma"}
    assert [p.strengths for p in space.plan(config).pools] == [[0.5, 0.7, 0.9], [0.5], [0.9]]
