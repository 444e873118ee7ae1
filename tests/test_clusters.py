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
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"] == "raysynth-cub"
    spec = job["spec"]
    assert "jobs/search.py --dataset cub" in spec["entrypoint"]
    cluster = spec["rayClusterSpec"]
    import ray

    assert cluster["rayVersion"] == ray.__version__
    # the submitter pod and the operator reach the dashboard through the head Service
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert cluster["authOptions"]["mode"] == "token" and cluster["enableInTreeAutoscaling"] is True
    (gpu,) = cluster["workerGroupSpecs"]
    # head and workers run the same image, the one the Dockerfile builds (its version: the package's)
    images = {head["template"]["spec"]["containers"][0]["image"], gpu["template"]["spec"]["containers"][0]["image"]}
    assert images == {"your-registry/raysynth:0.1.0"}
    assert gpu["groupName"] == "gpu" and gpu["minReplicas"] == 0 < gpu["maxReplicas"] and gpu["minReplicas"] <= gpu["replicas"]
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


# ------------------------------------------------------------------ node types of a cold cluster


def _rayjob_cluster_spec():
    return yaml.safe_load((CLUSTERS / "kuberay-rayjob.yaml").read_text())["spec"]["rayClusterSpec"]


def test_node_types_are_read_from_the_shipped_configs_while_scaled_to_zero():
    """What a cold cluster can grow to, read as raysynth reads it on the head: the
    launcher's config (the file its monitor was started with) and the RayCluster's
    worker groups (resources from the container limits, maxReplicas)."""
    from raysynth.node_types import k8s_quantity, kuberay_node_types, launcher_node_types

    for name in ("aws.yaml", "gcp.yaml"):
        config = yaml.safe_load((CLUSTERS / name).read_text())
        (gpu,) = launcher_node_types(config, name)  # the head type is not a worker type
        assert gpu.resources["GPU"] == 1 and gpu.max_workers == 8, name
    (group,) = kuberay_node_types(_rayjob_cluster_spec(), "RayCluster")
    assert group.resources["GPU"] == 1 and group.max_workers == 8
    assert group.resources["memory"] == k8s_quantity("28Gi") == 28 * 2**30
    assert k8s_quantity("500m") == 0.5
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        k8s_quantity("8 cores")
    # the cluster-wide cap bounds a type's max_workers; a suspended group adds nothing
    capped = launcher_node_types({"max_workers": 2, "available_node_types": {"g": {"resources": {"GPU": 1}, "max_workers": 8}}}, "x")
    assert capped[0].max_workers == 2
    spec = _rayjob_cluster_spec()
    spec["workerGroupSpecs"][0]["suspend"] = True
    assert kuberay_node_types(spec, "RayCluster")[0].max_workers == 0


def test_a_cold_cluster_is_checked_against_what_its_autoscaler_can_add(tiny_config):
    """A head with 1 CPU and no GPU, a GPU type at zero: GPU work fits (it is waited for),
    `auto` means a GPU, and only what no type can hold (or more than max_workers of
    them at once) is refused, in one line."""
    import dataclasses

    from raysynth.cluster import Capacity, check_cluster_fits, with_resolved_resources
    from raysynth.config import ConfigError
    from raysynth.node_types import NodeType

    head = {"CPU": 1.0, "memory": 8 * 2**30}
    cold = Capacity([head], [NodeType("gpu", {"CPU": 2.0, "GPU": 1.0}, 4, "test")])
    static = Capacity([head], None)
    assert cold.has_gpus() and not static.has_gpus()
    config = with_resolved_resources(tiny_config, cold)  # every kind says `auto`
    assert config.resources.trial.gpu == config.resources.generation.gpu == 1.0
    assert with_resolved_resources(tiny_config, static).resources.trial.gpu == 0.0
    # generation there is elastic: it starts with one actor, so more actors than nodes is no error
    check_cluster_fits(dataclasses.replace(config, pool=dataclasses.replace(config.pool, actors=9)), cold)
    # train.workers start together: at most max_workers x 1 GPU of them
    workers = dataclasses.replace(config, train=dataclasses.replace(config.train, workers=4))
    check_cluster_fits(workers, cold)
    with pytest.raises(ConfigError, match=r"train.workers: 5 units of \{CPU: 1, GPU: 1\} must run at once, but this cluster can hold 4"):
        check_cluster_fits(dataclasses.replace(workers, train=dataclasses.replace(config.train, workers=5)), cold)
    # a static cluster (no autoscaler): generation's actors start together
    static_gpu = Capacity([head, {"CPU": 2.0, "GPU": 1.0, "memory": 8 * 2**30}], None)
    with pytest.raises(ConfigError, match=r"pool.actors: 2 units of \{CPU: 1, GPU: 1\} must run at once, but this cluster can hold 1"):
        check_cluster_fits(dataclasses.replace(config, pool=dataclasses.replace(config.pool, actors=2)), static_gpu)
    two_gpus = dataclasses.replace(config.resources, trial=dataclasses.replace(config.resources.trial, gpu=2.0))
    with pytest.raises(ConfigError, match=r"resources.trial: one unit asks for \{CPU: 1, GPU: 2\}, more than any node .* can add"):
        check_cluster_fits(dataclasses.replace(config, resources=two_gpus), cold)
    # a type whose resources the cloud fills in: nothing to refuse on, the search waits
    check_cluster_fits(dataclasses.replace(config, resources=two_gpus), Capacity([head], [NodeType("x", {}, 2, "test")]))


def test_the_image_and_the_rayjob_fit_a_cold_retried_search_on_real_nodes():
    """The Dockerfile (hadolint-clean, Ray's GPU image at the pinned Ray, the constraints
    file), used by the RayJob, whose worker pods fit a 1-GPU node of 8 vCPU / 32 GB and
    whose retries resume the same search."""
    import shutil
    import subprocess

    import ray

    dockerfile = (CLUSTERS.parents[1] / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{ray.__version__}-py311-gpu" in dockerfile
    assert "-c constraints.txt" in dockerfile
    hadolint = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    lint = subprocess.run([hadolint, "--failure-threshold", "info", "-"], input=dockerfile, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    from raysynth.node_types import k8s_quantity

    job = yaml.safe_load((CLUSTERS / "kuberay-rayjob.yaml").read_text())
    spec = job["spec"]
    assert "--name cub-search" in spec["entrypoint"] and "--resume auto" in spec["entrypoint"]
    assert spec["backoffLimit"] >= 1
    cluster = spec["rayClusterSpec"]
    assert cluster["autoscalerOptions"]["version"] in ("v1", "v2")
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    images = {c["image"] for g in groups for c in g["template"]["spec"]["containers"]}
    assert len(images) == 1 and not images.pop().endswith(":latest")
    for group in cluster["workerGroupSpecs"]:
        requests = group["template"]["spec"]["containers"][0]["resources"]["requests"]
        assert k8s_quantity(requests["cpu"]) < 8 and k8s_quantity(requests["memory"]) < 32e9
    # the VM configs install with the constraints file
    for name in ("aws.yaml", "gcp.yaml"):
        setup = yaml.safe_load((CLUSTERS / name).read_text())["setup_commands"]
        assert any("pip install" in c and "-c " in c and "constraints.txt" in c for c in setup), name


def test_a_working_dir_upload_leaves_out_git_and_the_venv(tmp_path):
    """What `ray job submit --working-dir .` uploads, packaged by Ray's own code."""
    import zipfile

    from ray._private.runtime_env.packaging import create_package

    repo = CLUSTERS.parents[1]
    (repo / ".venv").mkdir(exist_ok=True)  # as after `make`: it must stay out either way
    package = tmp_path / "working_dir.zip"
    create_package(str(repo), package, include_gitignore=True)
    names = zipfile.ZipFile(package).namelist()
    assert "jobs/search.py" in names and "raysynth/cli.py" in names
    assert not [n for n in names if n.startswith((".git/", ".venv/")) or "__pycache__" in n]
