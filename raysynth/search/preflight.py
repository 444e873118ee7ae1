"""Bad input the config cannot show, found before anything is started or written."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from raysynth.config import Config, ConfigError, flatten_params
from raysynth.context import split_of
from raysynth.generators.quality import check_quality_classes
from raysynth.losses import parse_loss
from raysynth.losses.partition import check_faiss
from raysynth.search.options import CONFIG_RECORD, SearchOptions
from raysynth.home import home_location
from raysynth.pool.cache import cache_limit_bytes
from raysynth.storage import check_writable, exists, is_uri, join, read_text
from raysynth.tracking.mlflow_runs import artifact_location, check_artifact_client


def preflight(config: Config, options: SearchOptions) -> None:
    """Bad input the config cannot show, found before anything is started or written:
    quality settings for classes the dataset does not have, FAISS missing where static
    partitions are needed, an unwritable storage path,
    an unreachable tracking server, a resume with another config. Each a one-line
    ConfigError (exit 2)."""
    check_quality_classes(config.pool.quality, split_of(config).classes)
    if config.partition.method == "static" and any(o.needs_partitions for o in parse_loss(config.loss)):
        check_faiss()
    check_writable(options.storage, "--storage")
    if is_uri(home_location()):  # the nodes' pool caches are bounded by RAYSYNTH_CACHE_GB
        cache_limit_bytes()
    uri = options.tracking_uri
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).close()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"--tracking-uri: no MLflow server answers at {uri} ({reason})") from None
    elif uri.startswith("sqlite:///"):
        check_writable(str(Path(uri[len("sqlite:///"):]).expanduser().parent), "--tracking-uri")
        check_artifact_client(artifact_location(uri, options.experiment))
    if options.resume:
        _check_resume(config, options)


def _check_resume(config: Config, options: SearchOptions) -> None:
    """A resumed search continues with exactly what it was started with: the config
    (concurrency included: Tune's restored searcher state assumes it), the MLflow
    experiment and the tracking store its runs live in."""
    record = join(options.directory, CONFIG_RECORD)
    if not exists(record):
        return
    saved = json.loads(read_text(record))
    for flag, then, now in (
        ("--experiment", saved.get("experiment"), options.experiment),
        ("--tracking-uri", saved.get("tracking_uri"), options.tracking_uri),
    ):
        if then is not None and then != now:
            raise ConfigError(f"--resume: search '{options.name}' was started with {flag} {then!r}, not {now!r}")
    old = flatten_params(saved.get("config", saved), sep=".")
    new = flatten_params(config.to_dict(), sep=".")
    differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if differ:
        k = differ[0]
        flag = " (--concurrency)" if k == "search.concurrency" else ""
        raise ConfigError(
            f"--resume: search '{options.name}' was started with another config ({k}{flag}: {old.get(k)!r} then, "
            f"{new.get(k)!r} now; {len(differ)} field(s) differ)"
        )


def config_record(config: Config, options: SearchOptions) -> str:
    """What ``--resume`` is checked against (written when a search starts)."""
    return json.dumps(
        {"config": config.to_dict(), "experiment": options.experiment, "tracking_uri": options.tracking_uri}, sort_keys=True
    )
