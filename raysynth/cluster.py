"""Connecting to Ray (or starting a local instance) and what raysynth's work asks it for.

A submitted job (``ray job submit``) or a shell with ``RAY_ADDRESS`` attaches to that
cluster; otherwise raysynth attaches to a running local ``ray start`` head, else starts
a private local instance whose dashboard listens on this machine only. A search never
attaches to another search's private instance: when that search ends, its cluster goes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import socket

from raysynth.config import Config, ConfigError
from raysynth.home import FAKE_GPUS_ENV, environment
from raysynth.logs import quiet_ray
from raysynth.node_types import NodeType, autoscaler_node_types

_private = {"gcs": None}  # the address of the private instance this driver started
# A cluster raysynth starts itself listens on this machine only.
LOCAL_RAY = {"dashboard_host": "127.0.0.1"}
log = logging.getLogger(__name__)


def check_ray_address(address: str) -> None:
    """A quick TCP probe of ``RAY_ADDRESS`` (host:port of a GCS): ray.init() itself keeps
    retrying an unreachable address for minutes."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    if address.startswith(("http://", "https://")):
        raise ConfigError(
            f"RAY_ADDRESS={address}: that is a dashboard/job-submission URL; unset it and pass "
            "--address to `ray job submit`, or set RAY_ADDRESS to the head's host:6379"
        )
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"RAY_ADDRESS={address}: no Ray cluster reachable ({getattr(exc, 'strerror', None) or exc})") from None


def _started_cluster() -> str | None:
    """The address a ``ray start`` head on this machine wrote (what Ray itself reads for
    ``ray.init()`` with no address), if that head still answers. Never a cluster another
    program started with ``ray.init()``: those write no address file, and raysynth does not
    use Ray's legacy ``address="auto"``, which attaches to any Ray process it finds."""
    try:
        from ray._private.services import find_bootstrap_address
    except ImportError:  # a Ray that moved its private helper: start a private cluster
        return None
    address = find_bootstrap_address(None)
    if not address:
        return None
    try:
        check_ray_address(address)
    except ConfigError:
        log.info("ignoring the stale Ray address %s (no head answers there)", address)
        return None
    return address


def connect_ray() -> None:
    """Attach to the cluster the user named (``RAY_ADDRESS``, a submitted job) or started
    (``ray start`` on this machine), else start a private one for this search alone."""
    import ray

    if ray.is_initialized():
        return
    _connect(ray)
    quiet_ray()  # Ray's per-trial chatter to log files (raysynth.logs)


def _connect(ray) -> None:
    if os.environ.get("RAY_ADDRESS"):
        check_ray_address(os.environ["RAY_ADDRESS"])
        try:
            ray.init()
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ConfigError(f"RAY_ADDRESS={os.environ['RAY_ADDRESS']}: no Ray cluster reachable ({first})") from None
        return
    address = _started_cluster()
    if address:
        ray.init(address=address)
    else:
        # One machine, no cloud to reclaim it: Ray Train's preemption watcher has nothing
        # to watch, and its actor's creation logs an ERROR line per trainer on the console
        # (ray-project/ray#53727). Set before ray.init, so the workers inherit it too.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
        # the dashboard serves the state API that Ray Train's controller polls
        with _pinned_address():
            ray.init(address="local", **LOCAL_RAY)
        _private["gcs"] = ray.get_runtime_context().gcs_address


@contextlib.contextmanager
def _pinned_address():
    """A private cluster's address, chosen before it starts, as RAY_ADDRESS in the environment
    its processes inherit (then restored here): Ray's helpers in its workers (Ray Train's
    placement-group cleaner asks for "auto") find it, not "multiple active Ray instances"."""
    import ray

    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    with environment(RAY_GCS_SERVER_PORT=str(port), RAY_ADDRESS=f"{ray.util.get_node_ip_address()}:{port}"):
        yield


def live_placement_groups() -> set[str]:
    """The ids of the placement groups the cluster holds (any not yet removed)."""
    import ray

    return {pg_id for pg_id, pg in ray.util.placement_group_table().items() if pg["state"] != "REMOVED"}


def placement_groups_left(before: set[str]) -> set[str]:
    """Placement groups created since ``before`` and still held (resources reserved)."""
    left = live_placement_groups() - before
    if left:
        log.warning("the search left %d placement group(s) on the cluster (%s): their resources stay reserved "
                    "until removed (ray.util.remove_placement_group)", len(left), ", ".join(sorted(left)))
    return left


def ray_run_tags() -> dict[str, str]:
    """MLflow tags saying where a search ran on Ray: the submission id of a ``ray job
    submit`` job (from the job config Ray hands the driver) and the dashboard's URL."""
    tags = {}
    try:
        job_config = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    except ValueError:
        job_config = {}
    submission = (job_config.get("metadata") or {}).get("job_submission_id")
    if submission:
        tags["raysynth.ray_job_submission_id"] = submission
    try:
        from ray._private.worker import get_dashboard_url

        url = get_dashboard_url()
    except Exception:  # no dashboard (Ray started without it), or Ray moved its private API
        url = None
    if url:
        tags["raysynth.ray_dashboard"] = url if url.startswith("http") else f"http://{url}"
    return tags

# ------------------------------------------------------------------ what work asks for

KINDS = ("trial", "generation", "final", "finetune", "prepare")


@dataclasses.dataclass
class Capacity:
    """What the connected cluster has and can grow to: the nodes alive now, and the
    worker types its autoscaler may add (None: no autoscaler found, a static cluster)."""

    nodes: list[dict[str, float]]
    types: list[NodeType] | None

    @classmethod
    def read(cls) -> Capacity:
        import ray

        nodes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
        # a private instance has no autoscaler (another cluster's, on this machine, is not its)
        private = _private["gcs"] == ray.get_runtime_context().gcs_address
        return cls(nodes, None if private else autoscaler_node_types())

    def shapes(self) -> list[tuple[dict[str, float], int]]:
        """(resources of one node, how many such nodes there can be), alive and addable."""
        return [(n, 1) for n in self.nodes] + [(t.resources, t.max_workers) for t in self.types or () if t.max_workers > 0]

    @property
    def unknown(self) -> list[str]:
        """Autoscaler types whose resources the config does not state (the cloud fills them in)."""
        return [t.name for t in self.types or () if t.max_workers > 0 and not t.resources]

    def has_gpus(self) -> bool:
        return any(shape.get("GPU", 0) > 0 for shape, _ in self.shapes())

    @property
    def autoscales(self) -> bool:
        """An autoscaler may add nodes: work that starts together need not wait for all."""
        return any(t.max_workers > 0 for t in self.types or ())


def cluster_has_gpus() -> bool:
    """A node alive now, or a node type the autoscaler can start, has a GPU."""
    import ray

    return ray.is_initialized() and Capacity.read().has_gpus()


def default_cpus(config: Config, kind: str, gpu: float) -> float:
    if kind in ("trial", "final"):
        return float(config.train.threads)
    if kind == "generation" and gpu == 0:
        # a share of the machine, so pool.actors CPU actors fit beside the driver
        import ray

        cpus = float(ray.cluster_resources().get("CPU", 1.0)) if ray.is_initialized() else 1.0
        return round(max(0.25, min(1.0, (cpus - 0.5) / config.pool.actors)), 2)
    return 1.0


def _gpus(gpu: float | str, has_gpus) -> float:
    """A ``gpu`` setting as a number: ``auto`` is 1 where the cluster has (or can add) GPUs."""
    return (1.0 if has_gpus() else 0.0) if gpu == "auto" else float(gpu)


def resources_of(config: Config, kind: str) -> dict[str, float]:
    """One unit of ``kind`` as Ray resources ({"CPU", "GPU", "memory"}), ``auto`` resolved
    against the cluster this process is connected to."""
    work = getattr(config.resources, kind)
    gpu = _gpus(work.gpu, cluster_has_gpus)
    out = {"CPU": float(work.cpu) if work.cpu is not None else default_cpus(config, kind, gpu)}
    if gpu > 0:
        out["GPU"] = gpu
    if work.memory > 0:
        out["memory"] = float(work.memory)
    return out


def with_resolved_resources(config: Config, capacity: Capacity | None = None) -> Config:
    """The config with every ``gpu: auto`` replaced by what it means on the cluster this
    process is connected to, or can grow to (resolved once, on the driver; trials and
    workers read numbers, and the parent run records what the search asked for)."""
    has_gpus = capacity.has_gpus if capacity is not None else functools.cache(cluster_has_gpus)
    # carried to every worker by home_env(): a GPU without CUDA is then no error
    os.environ[FAKE_GPUS_ENV] = "1" if config.resources.fake_gpus else "0"
    resolved = {}
    for kind in KINDS:
        work = getattr(config.resources, kind)
        resolved[kind] = dataclasses.replace(work, gpu=_gpus(work.gpu, has_gpus))
    return dataclasses.replace(config, resources=dataclasses.replace(config.resources, **resolved))


def ray_options(resources: dict[str, float]) -> dict[str, float]:
    """Resources as ``ray.remote``/``.options`` keyword arguments."""
    out = {"num_cpus": resources.get("CPU", 0.0), "num_gpus": resources.get("GPU", 0.0)}
    if resources.get("memory"):
        out["memory"] = resources["memory"]
    return out


def trial_resources(config: Config) -> dict[str, float]:
    """What one trial asks Ray for: with ``train.workers == 1`` the trial is the worker;
    with more, it only drives a TorchTrainer whose workers ask for ``resources.trial``
    each (the trial then asks for a 1-byte memory request: Ray refuses an empty bundle)."""
    if config.train.workers > 1:
        return {"CPU": 0.0, "memory": 1.0}
    return resources_of(config, "trial")


def check_resources(config: Config) -> None:
    """The resources section: gpu is a number >= 0 or 'auto'."""
    for kind in KINDS:
        gpu = getattr(config.resources, kind).gpu
        if isinstance(gpu, str) and gpu != "auto":
            raise ConfigError(f"resources.{kind}.gpu: must be a number >= 0 or 'auto', got '{gpu}'")
        if not isinstance(gpu, str) and gpu < 0:
            raise ConfigError(f"resources.{kind}.gpu: must be >= 0 or 'auto', got {gpu}")


def _describe(resources: dict[str, float]) -> str:
    """{CPU: 2, GPU: 1, memory: 15.8 GiB}: what work asks for, without Ray's internal
    per-node and placement-group entries."""
    parts = []
    for k, v in sorted(resources.items()):
        if not v or k.startswith("node:") or "_group_" in k or k == "object_store_memory":
            continue
        parts.append(f"{k}: {v / 2**30:.1f} GiB" if k == "memory" and v > 2**20 else f"{k}: {v:g}")
    return "{" + ", ".join(parts) + "}"


def fits(unit: dict[str, float], shape: dict[str, float]) -> bool:
    """Whether one node of ``shape`` holds ``unit``. Memory a node type does not state
    (an autoscaler type) does not refuse: the node it starts has some."""
    return all(shape.get(k, 0.0) >= v for k, v in unit.items() if v > 0 and (k in shape or k != "memory"))


def check_cluster_fits(config: Config, capacity: Capacity | None = None) -> None:
    """Bad input, before anything starts: a unit of work no node type can ever hold, or
    more generation actors / final workers (which start together) than every node the
    cluster has and its autoscaler can add could hold at once. One line naming the
    resource. What fits only once the autoscaler adds nodes is waited for (bounded)."""
    capacity = capacity or Capacity.read()
    if capacity.unknown:  # the cloud decides those types' resources: nothing to refuse on
        log.info("autoscaler node types %s state no resources: placement is checked by waiting", capacity.unknown)
        return
    shapes = capacity.shapes()
    if not shapes:
        return
    largest = {k: max(s.get(k, 0.0) for s, _ in shapes) for k in ("CPU", "GPU", "memory")}
    # (kind, units that start together, one unit): a multi-worker trial's workers ask for resources.trial each
    # (generation on an autoscaling cluster is elastic: it needs one actor to start)
    actors = 1 if capacity.autoscales else config.pool.actors
    work = [("trial", config.train.workers, resources_of(config, "trial")), ("final", config.train.workers, resources_of(config, "final")),
            ("generation", actors, resources_of(config, "generation"))]
    for kind, count, unit in work:
        if not any(fits(unit, shape) for shape, _ in shapes):
            raise ConfigError(
                f"resources.{kind}: one unit asks for {_describe(unit)}, more than any node of this cluster has or "
                f"its autoscaler can add (largest: {_describe(largest)})"
            )
        # units that must run at the same time: how many of them fit on all nodes together
        room = sum(n * _units_on(unit, shape) for shape, n in shapes)
        if count > room:
            flag = "pool.actors" if kind == "generation" else "train.workers"
            raise ConfigError(
                f"{flag}: {count} units of {_describe(unit)} must run at once, but this cluster can hold "
                f"{int(room)} at most (nodes: {', '.join(f'{n} x ' * (n != 1) + _describe({k: s.get(k, 0) for k in ('CPU', 'GPU')}) for s, n in shapes)})"
            )


def _units_on(unit: dict[str, float], shape: dict[str, float]) -> int:
    """How many units one node of ``shape`` holds (a resource the shape does not state,
    e.g. an autoscaler type's memory, does not limit)."""
    return int(min((shape.get(k, 0.0) // v for k, v in unit.items() if v > 0 and (k in shape or k != "memory")), default=0))


class ResourceWaitError(RuntimeError):
    """Work waited ``search.resource_wait_s`` for resources the cluster did not give."""


def waiting_message(what: str, waited: float, unit: dict[str, float], count: int = 1) -> str:
    """One line: what waited how long for what, and what the cluster has."""
    import ray

    return (
        f"{what}: waited {waited:.0f} s (search.resource_wait_s) for {count} x {_describe(unit)}; "
        f"the cluster has {_describe(ray.cluster_resources())}, free now {_describe(ray.available_resources())}"
    )


def wait_for_resources(bundles: list[dict[str, float]], what: str, wait_s: float, strategy: str = "PACK"):
    """A placement group holding ``bundles``, once the cluster can give them; a
    ResourceWaitError after ``wait_s`` seconds (0: wait forever) naming what was asked
    and what the cluster has. The caller removes the group."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    pg = placement_group([{k: v for k, v in b.items() if v > 0} for b in bundles], strategy=strategy)
    waited = 0.0
    while True:
        step = 30.0 if not wait_s else max(0.1, min(30.0, wait_s - waited))
        ready, _ = ray.wait([pg.ready()], timeout=step)
        if ready:
            return pg
        waited += step
        if wait_s and waited >= wait_s:
            remove_placement_group(pg)
            raise ResourceWaitError(waiting_message(what, waited, bundles[0], len(bundles)))
        log.info("%s: waiting for %d x %s (free now: %s)", what, len(bundles), _describe(bundles[0]), _describe(ray.available_resources()))


def pending_timeout(wait_s: float, resources: dict[str, float]):
    """A Tune callback that ends the search when trials have waited ``wait_s`` seconds
    for resources with none running (a cluster that never gives them: an autoscaler
    that cannot add the node, GPUs held by another job); 0: wait forever. A trial whose
    resources are free is starting (its actor importing torch on a busy node), not
    waiting: the clock starts again."""
    import time

    import ray
    from ray.tune import Callback

    class PendingTimeout(Callback):
        def __init__(self):
            self.since = None

        def on_step_begin(self, iteration, trials, **info):
            waiting = any(t.status == "PENDING" for t in trials) and not any(t.status == "RUNNING" for t in trials)
            if not waiting or not wait_s:
                self.since = None
                return
            self.since = self.since or time.monotonic()
            if time.monotonic() - self.since > wait_s:
                if fits(resources, ray.available_resources()):
                    log.info("trials: pending %.0f s with %s free; their actors are starting", wait_s, resources)
                    self.since = time.monotonic()
                    return
                raise ResourceWaitError(waiting_message("trials", wait_s, resources))

    return PendingTimeout()
