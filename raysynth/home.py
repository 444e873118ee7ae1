"""Where raysynth keeps what it makes: ``RAYSYNTH_HOME``, and the content hashes that
name cached artifacts (pools, partitions, weights) inside it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def raysynth_home() -> Path:
    """Absolute home of the MLflow store, pool store, weights and Tune state.

    Absolute on purpose: a job started by ``ray job submit`` runs in a temporary working
    directory, where a relative path would be lost with the job.
    """
    home = os.environ.get("RAYSYNTH_HOME", "~/.raysynth")
    if "://" in home:
        # a URI must not silently become a local directory named "s3:"
        from raysynth.config import ConfigError

        raise ConfigError(f"RAYSYNTH_HOME={home}: URIs are not supported yet; give a local path or a shared mount every node sees")
    return Path(home).expanduser().resolve()


def fingerprint(*parts: Any, length: int = 16) -> str:
    """Stable content hash of JSON-serialisable parts (cache keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
