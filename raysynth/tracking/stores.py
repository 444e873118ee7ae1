"""The MLflow tracking store of a search, checked before anything uses it.

A tracking URI is a scheme MLflow knows, a store that keeps what it is given (no
in-memory sqlite), a server that answers within a few seconds; a sqlite store's artifacts
go beside its database, never into the working directory a submitted job loses.
"""

from __future__ import annotations

import importlib.util
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from raysynth.config import ConfigError
from raysynth.home import fingerprint, raysynth_home, remote_twin
from raysynth.storage import check_writable, expand, join

# what MLflow's tracking store registry knows (mlflow.tracking._tracking_service.utils);
# a database scheme may name its driver (postgresql+psycopg2)
SCHEMES = ("", "file", "http", "https", "databricks", "databricks-uc", "uc")
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
MAX_EXPERIMENT_NAME = 500  # mlflow.utils.validation.MAX_EXPERIMENT_NAME_LENGTH
ANSWER_S = 5.0  # how long a tracking server has to answer /health


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{raysynth_home() / 'mlflow.db'}"


def check_tracking_store(uri: str, flag: str = "--tracking-uri", existing: bool = False) -> None:
    """A one-line ConfigError for a tracking URI MLflow cannot use, found before the work:
    an unknown scheme, sqlite without a file (an in-memory store loses every run), a
    server that does not answer within ANSWER_S seconds, a sqlite directory that cannot
    be written; ``existing``: a sqlite file must exist (a reader would create an empty
    store and show nothing)."""
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme not in SCHEMES and scheme.split("+")[0] not in DATABASES:
        raise ConfigError(f"{flag}: MLflow knows no tracking store '{scheme}://' ({uri}); use http(s)://, sqlite:///<file>, "
                          "postgresql://, mysql://, mssql:// or a directory")
    if scheme.startswith("sqlite"):
        path = uri.split(":///", 1)[1] if ":///" in uri else ""
        if not path or path.startswith(":memory:") or path.startswith("file::memory:"):
            raise ConfigError(f"{flag}: {uri} is an in-memory database that loses every run; give a file: sqlite:///<path>")
        database = expand(path, flag)
        if existing and not database.is_file():
            raise ConfigError(f"{flag}: no MLflow store at {database}")
        if not existing:
            check_writable(str(database.parent), flag)  # creates nothing
    elif scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=ANSWER_S).close()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"{flag}: no MLflow server answers at {uri} ({reason})") from None


def check_experiment_name(name: str, flag: str = "--experiment") -> None:
    """A name MLflow accepts for an experiment (not empty, at most its length limit)."""
    if not name.strip():
        raise ConfigError(f"{flag}: empty; name the MLflow experiment")
    if len(name) > MAX_EXPERIMENT_NAME:
        raise ConfigError(f"{flag}: {len(name)} characters; MLflow takes at most {MAX_EXPERIMENT_NAME}")


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: for a sqlite store, an absolute directory
    beside the database (``$RAYSYNTH_HOME/artifacts/...`` by default) — MLflow's own
    default, ``./mlruns`` of the working directory, is deleted with a submitted job's
    temporary working directory. A remote home keeps the database in this machine's
    cache and the artifacts in the object store (``s3://.../artifacts/...``). For a
    tracking server: None, its artifact store."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri[len("sqlite:///"):]).expanduser().resolve()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment)[:64]
    name = f"{safe}-{fingerprint(experiment, length=8)}"
    remote = remote_twin(database.parent)
    if remote is not None:  # MLflow knows Google Cloud Storage as gs:// only
        return join(remote.replace("gcs://", "gs://", 1), "artifacts", name)
    return (database.parent / "artifacts" / name).as_uri()


# the client library MLflow needs for each artifact store scheme, and what installs it
ARTIFACT_CLIENTS = {
    "s3": ("boto3", "pip install 'raysynth[s3]'"),
    "gs": ("google.cloud.storage", "pip install 'raysynth[gcs]'"),
    "abfss": ("azure.storage.blob", "pip install azure-storage-blob azure-identity"),
}


def check_artifact_client(location: str | None) -> None:
    """A one-line ConfigError when MLflow could not write artifacts to ``location``
    because its client library is missing (found before the search starts, not after it)."""
    scheme = (location or "").partition("://")[0]
    module, install = ARTIFACT_CLIENTS.get(scheme, (None, None))
    if module is not None and importlib.util.find_spec(module.split(".")[0]) is None:
        raise ConfigError(f"MLflow artifacts in {scheme}:// need the '{module}' package: {install}")
