"""A cold autoscaling Ray cluster on this machine, for tests and benchmarks.

Ray's fake multi-node provider (``RAY_FAKE_CLUSTER=1``, provider ``fake_multinode``)
runs a real autoscaler (v1 or v2) whose "nodes" are raylets started on this machine. The
head is a plain ``ray start --head --autoscaling-config`` with its own ports and temp
dir, so it sits beside any other Ray instance here; ``stop()`` ends exactly its
processes (by the temp dir in their command lines), never with ``ray stop``, which
would end every Ray instance on the machine.

``ray.cluster_utils.AutoscalingCluster`` does the same but reads an ``example.yaml``
the wheel does not ship, and runs ``ray stop --force`` first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Ray's ``fake_multi_node/example.yaml`` minus its node types (the caller gives them)
BASE_CONFIG = {
    "cluster_name": "fake_multinode",
    "max_workers": 8,
    "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                 "disable_launch_config_check": True},
    "head_node_type": "ray.head.default",
    "auth": {},
    "upscaling_speed": 1.0,
    "idle_timeout_minutes": 5,
    "docker": {},
    "initialization_commands": [], "setup_commands": [], "head_setup_commands": [], "worker_setup_commands": [],
    "head_start_ray_commands": [], "worker_start_ray_commands": [],
    "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
    "rsync_exclude": [], "rsync_filter": [],
}
FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"
# the provider's defaults, which autoscaler v2 loads from beside the provider's module;
# the wheel does not ship the file (Ray's repository does: this is its content)
EXAMPLE_YAML = """\
cluster_name: fake_multinode
max_workers: 8
provider:
    type: fake_multinode
    use_node_id_as_ip: True
    disable_node_updaters: True
    disable_launch_config_check: True
available_node_types:
    ray.head.default:
        resources:
            CPU: 8
            GPU: 0
        node_config: {}
        max_workers: 0
    ray.worker.cpu:
        resources:
            CPU: 1
            object_store_memory: 1000000000
        node_config: {}
        min_workers: 2
        max_workers: 4
    ray.worker.gpu:
        resources:
            CPU: 4
            GPU: 1
            object_store_memory: 1000000000
        node_config: {}
        min_workers: 0
        max_workers: 2
head_node_type: ray.head.default
auth: {}
upscaling_speed: 1.0
idle_timeout_minutes: 0.1
docker: {}
initialization_commands: []
setup_commands: []
head_setup_commands: []
worker_setup_commands: []
head_start_ray_commands: []
worker_start_ray_commands: []
file_mounts: {}
cluster_synced_files: []
file_mounts_sync_continuously: false
rsync_exclude: []
rsync_filter: []
"""


def ensure_provider_defaults() -> Path:
    """Write Ray's ``fake_multi_node/example.yaml`` beside the installed provider when the
    wheel lacks it (autoscaler v2 reads it); returns its path."""
    import ray.autoscaler._private.fake_multi_node as provider

    path = Path(provider.__file__).parent / "example.yaml"
    if not path.exists():
        path.write_text(EXAMPLE_YAML)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pids_of(marker: str) -> list[int]:
    """PIDs whose command line mentions ``marker``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker in (proc / "cmdline").read_bytes().decode(errors="ignore"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def stop_processes(marker: str) -> None:
    """End exactly the processes whose command line names ``marker`` (TERM, then KILL)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids_of(marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 20
        while pids_of(marker) and time.time() < deadline:
            time.sleep(0.5)


def hides_paths() -> bool:
    """Whether processes can be started in a mount namespace of their own here."""
    probe = tempfile.mkdtemp(prefix="rshide-")
    try:
        out = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", f'mount -t tmpfs none "{probe}"'],
                             capture_output=True, timeout=30)
        return out.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
    finally:
        os.rmdir(probe)


class FakeAutoscalingCluster:
    # token auth off on the cluster, and so in each process that attaches to it (Ray reads
    # the mode when it is imported: set it in the process's environment at its start)
    client_env = {"RAY_AUTH_MODE": "disabled"}

    """``with FakeAutoscalingCluster({"gpu": {"resources": {"CPU": 2, "GPU": 1}, "max_workers": 4}}) as c:``
    a head with ``head_cpus`` CPUs and no GPU, every worker type at ``min_workers``
    (default 0): cold. ``c.address`` is the GCS address (host:port); a driver attaching
    to it needs ``c.client_env`` in its environment from its start (token auth off, as on the
    cluster: a driver in token mode, as ``ray.init`` leaves any process that started a
    local instance, has every actor it creates cancelled before it starts).

    ``hidden``: a directory the cluster's processes do not see (an empty tmpfs over it,
    in a mount namespace of their own: ``unshare -m``, root only): what this machine
    writes there is absent on the cluster's nodes, as on a node-local path of a real
    multi-node cluster. ``hides_paths()`` says whether this machine allows it."""

    def __init__(self, worker_types: dict, head_cpus: float = 1, v2: bool = False, idle_timeout_minutes: float = 5,
                 hidden: str | None = None):
        types = {name: {"node_config": {}, "min_workers": 0, **spec} for name, spec in worker_types.items()}
        types["ray.head.default"] = {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0}
        self.config = {**BASE_CONFIG, "available_node_types": types, "idle_timeout_minutes": idle_timeout_minutes}
        self.config["max_workers"] = sum(t.get("max_workers", 0) for t in types.values())
        if v2:
            self.config["provider"] = {**self.config["provider"], "launch_multiple": True, "head_node_id": FAKE_HEAD_NODE_ID}
        self.head_cpus, self.v2, self.hidden = head_cpus, v2, hidden
        self.temp_dir: Path | None = None
        self.address = ""
        self.dashboard = ""

    def start(self, env: dict | None = None, timeout: float = 120) -> FakeAutoscalingCluster:
        # Ray's socket paths must stay short: a temp dir directly under /tmp
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rsfake-", dir="/tmp"))
        from ray._private.services import get_node_ip_address

        gcs, dashboard = free_port(), free_port()
        # the provider starts its raylets against this GCS (its default is port 6379)
        self.config["provider"] = {**self.config["provider"], "gcs_address": f"{get_node_ip_address()}:{gcs}"}
        config = self.temp_dir / "autoscaling.json"
        config.write_text(json.dumps(self.config))
        # token auth off: `ray start` turns it on whenever ~/.ray/auth_token exists, and
        # the test's clients (and the raylets the fake provider starts) hold no token
        env = {**os.environ, **self.client_env, **(env or {}), "RAY_FAKE_CLUSTER": "1",
               "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        env.pop("RAY_ADDRESS", None)
        if self.v2:
            ensure_provider_defaults()
            env.update({"RAY_enable_autoscaler_v2": "1", "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,
                        "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID})
        ray_bin = Path(sys.executable).parent / "ray"
        cmd = [str(ray_bin), "start", "--head", f"--autoscaling-config={config}", f"--port={gcs}",
               f"--num-cpus={self.head_cpus}", "--num-gpus=0", "--dashboard-host=127.0.0.1",
               f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={free_port()}",
               "--disable-usage-stats", f"--temp-dir={self.temp_dir}"]
        if self.hidden:
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs raysynth-hidden "$0" && exec "$@"', self.hidden, *cmd]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            self.stop()
            raise RuntimeError(f"fake autoscaling head did not start: {out.stderr[-2000:]}")
        self.address = f"127.0.0.1:{gcs}"
        self.dashboard = f"http://127.0.0.1:{dashboard}"
        return self

    def stop(self) -> None:
        if self.temp_dir is not None:
            stop_processes(str(self.temp_dir))
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None

    def __enter__(self) -> FakeAutoscalingCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
