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
    # the dashboard stays on the head; `ray dashboard` forwards it over SSH
    assert all("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"] if "--head" in c)
    # the GPU type is declared, so the autoscaler knows it can satisfy GPU work
    assert any(v["resources"].get("GPU", 0) >= 1 for v in workers.values())
    # token auth on every node, with the token copied to every node
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]
    assert starts and all("RAY_AUTH_MODE=token" in c for c in starts)
    assert any(path.endswith(".ray/auth_token") for path in config["file_mounts"])
    # RAYSYNTH_HOME on a shared file system every node mounts
    homes = {c.split("RAYSYNTH_HOME=")[1].split()[0] for c in starts}
    assert len(homes) == 1
    (home,) = homes
    assert any("mount" in c and home in c for c in config["setup_commands"])
    broken = copy.deepcopy(config)
    broken["available_node_types"][config["head_node_type"]]["not_a_field"] = 1
    with pytest.raises(Exception, match="not_a_field"):
        validate_config(prepare_config(broken))


CRD = Path(__file__).resolve().parents[2] / "shared" / "reference" / "kuberay" / "ray.io_rayjobs.yaml"


def test_kuberay_rayjob_matches_the_crd():
    """The RayJob against KubeRay's own CustomResourceDefinition (its OpenAPI schema)."""
    if not CRD.is_file():
        pytest.skip(f"KubeRay's RayJob CRD is not at {CRD}")
    import jsonschema

    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = version["schema"]["openAPIV3Schema"]
    job = yaml.safe_load((CLUSTERS / "kuberay-rayjob.yaml").read_text())
    jsonschema.validate(job, schema)
    broken = copy.deepcopy(job)
    broken["spec"]["rayClusterSpec"]["authOptions"]["mode"] = "password"
    with pytest.raises(jsonschema.ValidationError, match="password"):
        jsonschema.validate(broken, schema)


def test_kuberay_rayjob_manifest():
    job = yaml.safe_load((CLUSTERS / "kuberay-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    spec = job["spec"]
    assert "jobs/search.py --dataset cub" in spec["entrypoint"]
    cluster = spec["rayClusterSpec"]
    import ray

    assert cluster["rayVersion"] == ray.__version__
    # the submitter pod and the operator reach the dashboard through the head Service
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert cluster["authOptions"]["mode"] == "token" and cluster["enableInTreeAutoscaling"] is True
    assert head["template"]["spec"]["containers"][0]["image"]
    (gpu,) = cluster["workerGroupSpecs"]
    assert gpu["groupName"] and gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    pod = gpu["template"]["spec"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    limits = pod["containers"][0]["resources"]["limits"]
    # the GPU layout holds cub.yaml's generation actors and concurrent trials at once
    from raysynth.config import parse_config

    cub = parse_config(CLUSTERS.parents[1] / "search_spaces" / "cub.yaml")
    gpus = gpu["maxReplicas"] * int(limits["nvidia.com/gpu"])
    assert gpus >= cub.pool.actors * cub.resources.generation.gpu
    assert gpus >= cub.search.concurrency * cub.resources.trial.gpu
    assert float(limits["cpu"]) >= max(cub.resources.trial.cpu, cub.resources.generation.cpu)
    # RAYSYNTH_HOME on the shared volume, mounted on the head and every worker
    env = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    for template in (head["template"]["spec"], pod):
        (mount,) = [m for m in template["containers"][0]["volumeMounts"] if m["name"] in claims]
        assert env["RAYSYNTH_HOME"].startswith(mount["mountPath"] + "/")
