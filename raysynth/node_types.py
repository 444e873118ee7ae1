"""The node types a cluster's autoscaler may start, read where the cluster publishes them.

Ray 2.60 reports no cluster config to the GCS (``state.get_cluster_config()`` is None
under both autoscalers), so a cold cluster — every GPU worker type at zero — looks like
a CPU-only head. The types live on the head:

- a launcher cluster (``ray up``: AWS, GCP; Ray's fake multi-node provider): the
  autoscaler's config file, named by the monitor process's ``--autoscaling-config``
  (``~/ray_bootstrap_config.yaml`` after ``ray up``);
- KubeRay: the RayCluster's worker groups, read from the Kubernetes API with the head
  pod's service account (the one KubeRay gives the autoscaler sidecar, allowed to read
  RayClusters).

A task pinned to the head reads them, so the driver may sit anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"
K8S_SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class NodeType:
    """A node type the autoscaler may start ``max_workers`` of. ``resources`` is empty
    when the config does not say (a launcher type whose resources the cloud fills in)."""

    name: str
    resources: dict
    max_workers: int
    source: str


def launcher_node_types(config: dict, source: str) -> list[NodeType]:
    """Worker types of a launcher config (``available_node_types``), each capped by the
    cluster-wide ``max_workers``; the head type is not a worker type."""
    head = config.get("head_node_type")
    cap = config.get("max_workers")
    out = []
    for name, spec in (config.get("available_node_types") or {}).items():
        if name == head:
            continue
        count = int(spec.get("max_workers", cap if cap is not None else 0))
        if cap is not None:
            count = min(count, int(cap))
        resources = {k: float(v) for k, v in (spec.get("resources") or {}).items() if k != "object_store_memory"}
        out.append(NodeType(name, resources, count, source))
    return out


_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3}


def k8s_quantity(value) -> float:
    """A Kubernetes quantity ("8", "500m", "32Gi") as a number."""
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value).strip())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def kuberay_node_types(raycluster_spec: dict, source: str) -> list[NodeType]:
    """Worker groups of a RayCluster spec, as KubeRay's autoscaler reads them: Ray start
    parameters first, else the Ray container's limits (``nvidia.com/gpu`` for GPUs);
    ``maxReplicas`` of each (0 for a suspended group)."""
    out = []
    for group in raycluster_spec.get("workerGroupSpecs") or []:
        params = group.get("rayStartParams") or {}
        containers = (group.get("template") or {}).get("spec", {}).get("containers") or [{}]
        limits = (containers[0].get("resources") or {}).get("limits") or {}
        resources = {}
        cpu = params.get("num-cpus", limits.get("cpu"))
        gpu = params.get("num-gpus", limits.get("nvidia.com/gpu"))
        memory = params.get("memory", limits.get("memory"))
        if cpu is not None:
            resources["CPU"] = float(k8s_quantity(cpu))
        if gpu is not None:
            resources["GPU"] = float(k8s_quantity(gpu))
        if memory is not None:
            resources["memory"] = float(k8s_quantity(memory))
        count = 0 if group.get("suspend") else int(group.get("maxReplicas", group.get("replicas", 0)) or 0)
        out.append(NodeType(str(group.get("groupName", "workers")), resources, count, source))
    return out


def _monitor_config_path(gcs_address: str | None = None) -> str | None:
    """The ``--autoscaling-config`` of an autoscaler monitor running on this machine, of
    the cluster at ``gcs_address`` when given (another cluster's monitor on a shared
    machine is not this cluster's autoscaler)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="ignore").split("\0")
        except OSError:
            continue
        if not any(a.endswith("monitor.py") for a in args):
            continue
        if gcs_address and f"--gcs-address={gcs_address}" not in args:
            continue
        for i, arg in enumerate(args):
            if arg.startswith("--autoscaling-config="):
                return arg.split("=", 1)[1]
            if arg == "--autoscaling-config" and i + 1 < len(args):
                return args[i + 1]
    return None


def _read_launcher_config(gcs_address: str | None = None) -> list[NodeType] | None:
    import yaml

    for path in (_monitor_config_path(gcs_address), os.path.expanduser(BOOTSTRAP_CONFIG)):
        path = os.path.expanduser(path) if path else None
        if path and os.path.isfile(path):
            try:
                config = yaml.safe_load(Path(path).read_text())  # JSON is YAML too
            except (OSError, yaml.YAMLError) as exc:
                log.warning("autoscaler config %s unreadable (%s)", path, exc)
                continue
            if isinstance(config, dict) and config.get("available_node_types"):
                return launcher_node_types(config, path)
    return None


def _read_kuberay() -> list[NodeType] | None:
    """The RayCluster this head belongs to, from the Kubernetes API (in a pod only)."""
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    name = os.environ.get("RAY_CLUSTER_NAME")
    if not host or not name or not (K8S_SERVICE_ACCOUNT / "token").is_file():
        return None
    import ssl
    import urllib.request

    namespace = (K8S_SERVICE_ACCOUNT / "namespace").read_text().strip()
    url = f"https://{host}:{port}/apis/ray.io/v1/namespaces/{namespace}/rayclusters/{name}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {(K8S_SERVICE_ACCOUNT / 'token').read_text().strip()}"})
    context = ssl.create_default_context(cafile=str(K8S_SERVICE_ACCOUNT / "ca.crt"))
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            raycluster = json.load(response)
    except OSError as exc:
        log.warning("RayCluster %s/%s unreadable from the Kubernetes API (%s)", namespace, name, exc)
        return None
    return kuberay_node_types(raycluster.get("spec") or {}, f"RayCluster {namespace}/{name}")


def read_node_types_here() -> list[NodeType] | None:
    """The autoscaler's worker types as this machine (the head) knows them; None when
    no autoscaler config is found here."""
    import ray

    gcs = ray.get_runtime_context().gcs_address if ray.is_initialized() else None
    return _read_launcher_config(gcs) or _read_kuberay()


def autoscaler_node_types() -> list[NodeType] | None:
    """The worker types the connected cluster's autoscaler may start, read on its head
    (a zero-CPU task pinned there); None without an autoscaler (a static cluster, a
    local instance) or when the head cannot be reached."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    try:
        from ray._private.state import state

        config = state.get_cluster_config()  # a Ray that reports it to the GCS
    except Exception:
        config = None
    if config is not None:
        return [NodeType(g.name, dict(g.resources), int(g.max_count), "GCS") for g in config.node_group_configs]
    head = next((n["NodeID"] for n in ray.nodes() if n.get("Alive") and "node:__internal_head__" in n.get("Resources", {})), None)
    if head is None:
        return None
    task = ray.remote(num_cpus=0, max_retries=0)(read_node_types_here).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(head, soft=False))
    try:
        return ray.get(task.remote(), timeout=60)
    except Exception as exc:  # the head's worker could not start or read: a static view
        log.warning("could not read the autoscaler's node types on the head (%s)", str(exc).splitlines()[0][:200])
        return None
