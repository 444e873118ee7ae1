"""The scale-out manifests: Ray's own cluster-launcher schema, and the RayJob's fields."""

import copy
from pathlib import Path

import pytest
import yaml

CLUSTERS = Path(__file__).resolve().parents[1] / "jobs" / "clusters"


@pytest.mark.parametrize("name, provider", [("aws.yaml", "aws"), ("gcp.yaml", "gcp")])
def test_launcher_configs_pass_rays_validator(name, provider):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((CLUSTERS / name).read_text())
    validate_config(prepare_config(copy.deepcopy(config)))  # raises on a schema violation
    assert config["provider"]["type"] == provider
    workers = {k: v for k, v in config["available_node_types"].items() if k != config["head_node_type"]}
    assert workers and all(0 <= v["min_workers"] <= v["max_workers"] <= config["max_workers"] for v in workers.values())
    gpu = next(iter(workers.values()))["node_config"]
    assert "InstanceType" in gpu and gpu["InstanceType"].startswith("g5") if provider == "aws" else gpu["guestAccelerators"]
    assert any("pip install" in c and "raysynth" in c for c in config["setup_commands"])
    assert all("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"] if "--head" in c)
    broken = copy.deepcopy(config)
    broken["available_node_types"][config["head_node_type"]]["not_a_field"] = 1
    with pytest.raises(Exception, match="not_a_field"):
        validate_config(prepare_config(broken))


def test_kuberay_rayjob_manifest():
    job = yaml.safe_load((CLUSTERS / "kuberay-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    spec = job["spec"]
    assert "jobs/search.py --dataset cub" in spec["entrypoint"]
    cluster = spec["rayClusterSpec"]
    import ray

    assert cluster["rayVersion"] == ray.__version__
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert head["template"]["spec"]["containers"][0]["image"]
    (gpu,) = cluster["workerGroupSpecs"]
    assert gpu["groupName"] and gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert env["RAYSYNTH_HOME"].startswith("/")
