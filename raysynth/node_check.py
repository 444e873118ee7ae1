"""Checks before the hours: one unit of the search's own work, placed as a trial is
placed (on a cold cluster: on the first node the autoscaler adds), must see what the
driver wrote in ``RAYSYNTH_HOME`` and, when given a GPU, a CUDA device torch can use.

Without it, a node-local home fails only after generation ("shards ... were not
written") and a driver/CUDA mismatch trains on CPU for hours.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass

from raysynth.cluster import ResourceWaitError, ray_options, resources_of, waiting_message
from raysynth.devices import gpu_problem, placement
from raysynth.config import Config, ConfigError
from raysynth.home import adopt_home, home_env, home_location
from raysynth.storage import exists, join, remove_file, write_text

log = logging.getLogger(__name__)
TOKENS = ".node-check"  # inside RAYSYNTH_HOME: one short-lived file per check


@dataclass
class NodeReport:
    node: str
    gpu_ids: str
    sees_home: bool
    gpu_problem: str | None
    seconds: float = 0.0  # from asking to the answer (a cold cluster: the first node's start)


class _Probe:
    """An actor, as a trial is one: it must start where the search's own actors will."""

    def report(self, home: dict[str, str], token: str) -> dict:
        adopt_home(home)  # the driver's home, as every trial adopts it
        return {**placement(), "sees_home": exists(token), "gpu_problem": gpu_problem()}


def _never_started(exc: Exception) -> str:
    """One line for an actor the cluster cancelled before it ran (Ray's reason kept)."""
    reason = next((line.strip() for line in str(exc).splitlines() if "never ran" in line), type(exc).__name__)
    mode = os.environ.get("RAY_AUTH_MODE")
    hint = (f"; this driver runs with RAY_AUTH_MODE={mode}: a cluster started without token auth cancels the actors "
            "of such a driver, so set RAY_AUTH_MODE to the cluster's mode") if mode and mode != "disabled" else ""
    return f"node check: an actor of this search died before it started ({reason}){hint}"


def check_nodes(config: Config) -> NodeReport:
    """Run the probe where a trial would run, waiting at most ``search.resource_wait_s``
    for the cluster to give it (ResourceWaitError after that). A ConfigError (exit 2)
    when that node does not see the driver's home or cannot use the GPU it was given."""
    import ray

    home = home_location()
    token = join(home, TOKENS, f"{uuid.uuid4().hex}.txt")
    write_text(token, "written by the search's driver; read by a worker node to check it sees the same home\n")
    unit = resources_of(config, "trial")  # one trial, or one worker of a multi-worker trial
    start = time.perf_counter()
    probe = ray.remote(max_restarts=0, max_task_retries=0)(_Probe).options(**ray_options(unit)).remote()
    try:
        ref = probe.report.remote(home_env(), token)
        wait_s = config.search.resource_wait_s
        ready, _ = ray.wait([ref], timeout=wait_s or None)
        if not ready:
            raise ResourceWaitError(waiting_message("node check (one trial's resources)", wait_s, unit))
        try:
            found = ray.get(ref)
        except ray.exceptions.ActorDiedError as exc:
            if "never ran" not in str(exc):
                raise
            raise ConfigError(_never_started(exc)) from None
    finally:
        ray.kill(probe)
        remove_file(token)
    report = NodeReport(found["node"], found["gpu_ids"], found["sees_home"], found["gpu_problem"], time.perf_counter() - start)
    if report.gpu_problem:
        raise ConfigError(report.gpu_problem)
    if not report.sees_home:
        raise ConfigError(
            f"RAYSYNTH_HOME={home}: node {report.node[:12]} does not see what the driver wrote there (a path local to "
            "each node?); on a multi-node cluster use a mount every node shares or an s3:// / gs:// URI"
        )
    log.info("node check: node %s (GPU ids '%s') sees the home and its GPUs, after %.1f s",
             report.node[:12], report.gpu_ids, report.seconds)
    return report

