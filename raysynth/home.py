"""Where raysynth keeps what it makes: ``RAYSYNTH_HOME`` (a local path, a shared mount
or an object-store URI), and the content hashes that name cached artifacts (pools,
partitions, weights) inside it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from raysynth.logs import VERBOSE_ENV, quiet_ray
from raysynth.storage import download, exists, is_uri, join, local_cache_root, upload, write_text

log = logging.getLogger(__name__)
# "1" in a worker's environment: the GPUs Ray gives are declared without hardware
# (resources.fake_gpus; set by the driver, read by raysynth.devices.work_device)
FAKE_GPUS_ENV = "RAYSYNTH_FAKE_GPUS"


def home_location() -> str:
    """``RAYSYNTH_HOME`` as every process of a search sees it: an absolute local path (a
    shared mount on a cluster), or an object-store URI (``s3://bucket/raysynth``).

    Absolute on purpose: a job started by ``ray job submit`` runs in a temporary working
    directory, where a relative path would be lost with the job.
    """
    from raysynth.storage import check_location

    return check_location(os.environ.get("RAYSYNTH_HOME", "~/.raysynth"), "RAYSYNTH_HOME")


def remote_home() -> str | None:
    """The home's URI when it lives in an object store (None: a local path)."""
    location = home_location()
    return location if is_uri(location) else None


def raysynth_home() -> Path:
    """The local directory this process reads and writes the home through.

    A local home is that directory. A remote home (``s3://...``) is mirrored in this
    node's cache, ``$RAYSYNTH_CACHE/<bucket>-<hash>`` (default ``~/.cache/raysynth``): the
    content-addressed artifacts (weights, pools, partitions, fitted generators) are
    written here and then published to the store (:func:`publish`); another node fetches
    them (:func:`fetch`) on first use and memory-maps its local copy. Files that only describe this node
    (decoded dataset caches, the test-read audit, a local MLflow database) stay here.
    """
    location = home_location()
    if not is_uri(location):
        return Path(location)
    bucket = re.sub(r"[^A-Za-z0-9._-]+", "_", location.partition("://")[2].split("/")[0])[:40]
    return local_cache_root() / f"{bucket}-{fingerprint(location, length=12)}"


PUBLISHED = ".published"  # written after a directory's files: the remote copy is complete


def publish(path: Path) -> None:
    """Copy a finished file or directory of the local home to a remote home (nothing to
    do for a local home, or for a path outside the home). Only complete artifacts are
    published: each is written atomically first, and its key names its content."""
    remote = remote_twin(path)
    if remote is None:
        return
    upload(Path(path), remote)
    if Path(path).is_dir():
        write_text(join(remote, PUBLISHED), "")


def published(path: Path, directory: bool = False) -> bool:
    """Whether a file (or ``directory``) of the home exists here or, complete, in a remote
    home (nothing is copied)."""
    if Path(path).exists():
        return True
    remote = remote_twin(path)
    return remote is not None and exists(join(remote, PUBLISHED) if directory else remote)


def fetch(path: Path, directory: bool = False) -> bool:
    """Whether a file (or ``directory``) of the home is here, copying it from a remote
    home first when this node lacks it. Local copies are renamed into place whole, so
    existence means complete; a remote directory is complete once its marker is there."""
    path = Path(path)
    if path.exists():
        return True
    if not published(path, directory):
        return False
    remote = remote_twin(path)
    log.info("fetching %s", remote)
    download(remote, path)
    if directory:
        (path / PUBLISHED).unlink(missing_ok=True)
    return True


def home_env() -> dict[str, str]:
    """What a Ray worker needs to see this driver's home: ``RAYSYNTH_HOME`` and, for a
    remote home, the cache path, so that every process names the same local copies."""
    env = {"RAYSYNTH_HOME": home_location()}
    if os.environ.get(VERBOSE_ENV):
        env[VERBOSE_ENV] = os.environ[VERBOSE_ENV]  # Ray's chatter on the console or not (raysynth.logs)
    if os.environ.get(FAKE_GPUS_ENV):
        env[FAKE_GPUS_ENV] = os.environ[FAKE_GPUS_ENV]  # resources.fake_gpus (raysynth.devices.work_device)
    if is_uri(env["RAYSYNTH_HOME"]):
        env["RAYSYNTH_CACHE"] = str(local_cache_root())
    return env


def adopt_home(env: dict[str, str]) -> None:
    """In a Ray worker: use the driver's home (:func:`home_env`), whatever the
    environment of the cluster's nodes says, and its console settings (Ray's chatter
    to log files unless verbose)."""
    os.environ.update(env)
    quiet_ray()


def remote_twin(path: Path) -> str | None:
    """The URI of a local home path's copy in a remote home (None: the home is local, or
    the path lies outside it)."""
    remote = remote_home()
    if remote is None:
        return None
    try:
        relative = Path(path).resolve().relative_to(raysynth_home()).as_posix()
        return remote if relative == "." else join(remote, relative)
    except ValueError:  # a store rooted outside the home (tests, benchmarks)
        return None
def fingerprint(*parts: Any, length: int = 16) -> str:
    """Stable content hash of JSON-serialisable parts (cache keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


@contextlib.contextmanager
def environment(**values: str):
    """Environment variables set for the ``with`` block (and the processes started in it),
    then restored as they were."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
