"""The device this worker computes on, and where Ray placed it.

Ray says which GPUs a worker was given; torch says whether it can use them. A real GPU
that torch cannot use is an error naming the node, torch's CUDA build and the driver,
never a silent fall back to the CPU (``resources.fake_gpus`` declares GPUs that have no
hardware, as the tests do).
"""

from __future__ import annotations

import functools
import os
import re
import socket
from pathlib import Path

from raysynth.home import FAKE_GPUS_ENV


def placement() -> dict[str, str]:
    """Where the calling Ray worker runs: its node id and the GPU ids Ray gave it
    (comma-separated; empty when none). Tags ``raysynth.node`` / ``raysynth.gpu_ids``."""
    import ray

    context = ray.get_runtime_context()
    return {"node": context.get_node_id(), "gpu_ids": ",".join(str(g) for g in ray.get_gpu_ids())}


@functools.cache
def gpus_have_cuda(gpus: float = 1.0) -> bool:
    """Whether a worker given ``gpus`` GPUs sees CUDA (a probe task, once per process):
    tests declare GPUs a machine does not have."""
    import ray

    probe = ray.remote(num_cpus=0, num_gpus=gpus)(_torch_sees_cuda)
    return bool(ray.get(probe.remote()))


def _torch_sees_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class GpuUnusableError(RuntimeError):
    """Ray gave this worker a GPU that torch cannot use."""


def nvidia_driver() -> str:
    """The NVIDIA kernel driver's version on this node, or 'none loaded'."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return "none loaded"
    match = re.search(r"Kernel Module\s+([0-9.]+)", text)
    return match.group(1) if match else text.splitlines()[0][:80]


def gpu_problem() -> str | None:
    """One line when Ray gave this worker GPUs that torch sees no CUDA device for (and
    the config does not declare them fake): the node, the GPU ids, torch's CUDA build
    and the driver. None when all is well."""
    import ray
    import torch

    ids = ray.get_gpu_ids() if ray.is_initialized() else []
    if not ids or torch.cuda.is_available() or os.environ.get(FAKE_GPUS_ENV) == "1":
        return None
    node = ray.get_runtime_context().get_node_id()
    return (
        f"node {node[:12]} ({socket.gethostname()}) was given GPU(s) {','.join(map(str, ids))} but torch "
        f"{torch.__version__} (built for CUDA {torch.version.cuda or 'none: a CPU build'}) sees no CUDA device; "
        f"NVIDIA driver: {nvidia_driver()}. Install a torch built for this driver (or a driver for this CUDA), "
        "or set resources.fake_gpus=true where GPUs are declared without hardware"
    )


def work_device() -> str:
    """'cuda' when Ray gave this worker a GPU and torch sees one; 'cpu' without a GPU or
    with GPUs the config declares fake (``resources.fake_gpus``). A real GPU torch cannot
    use is a GpuUnusableError, never a silent fall back to CPU."""
    import ray
    import torch

    problem = gpu_problem()
    if problem:
        raise GpuUnusableError(problem)
    return "cuda" if ray.is_initialized() and ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
