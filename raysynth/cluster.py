"""Connecting to Ray (or starting a local instance) and what raysynth's work asks it for.

A submitted job (``ray job submit``) or a shell with ``RAY_ADDRESS`` attaches to that
cluster; otherwise raysynth attaches to a running local ``ray start`` head, else starts
a private local instance whose dashboard listens on this machine only. A search never
attaches to another search's private instance: when that search ends, its cluster goes.
"""

from __future__ import annotations

import logging
import os
import socket

from raysynth.config import Config, ConfigError

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
        # the dashboard serves the state API that Ray Train's controller polls
        ray.init(address="local", **LOCAL_RAY)


def cluster_has_gpus() -> bool:
    import ray

    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0


def trial_resources(config: Config) -> dict[str, float]:
    """What one trial asks Ray for.

    In-trial path: the trial is the worker (``search.resources``, default train.threads
    CPUs and a whole GPU when the cluster has one). TorchTrainer path: the trial only
    drives the trainer, whose workers ask for their own; the trial asks for none (a
    1-byte memory request because Ray refuses an empty resource bundle).
    """
    if config.train.workers > 1:
        return {"cpu": 0, "memory": 1}
    resources = {"cpu": config.train.threads}
    if cluster_has_gpus():
        resources["gpu"] = 1
    resources.update(config.search.resources)
    return resources


def check_resources(config: Config) -> None:
    """search.resources names only what Ray schedules on, with amounts >= 0."""
    for name, amount in config.search.resources.items():
        if name not in ("cpu", "gpu", "memory"):
            raise ConfigError(f"search.resources.{name}: unknown resource (known: cpu, gpu, memory)")
        if amount < 0:
            raise ConfigError(f"search.resources.{name}: must be >= 0, got {amount}")
