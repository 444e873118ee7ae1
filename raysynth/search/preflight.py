"""Bad input the config cannot show, found before anything is started or written: every
edge check of a search, once — the command's options (:func:`search_options`) and what
the config and options say together (:func:`preflight`)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from raysynth.config import Config, ConfigError, flatten_params
from raysynth.generators.quality import check_quality_classes
from raysynth.losses import parse_loss
from raysynth.losses.partition import check_faiss
from raysynth.search.options import SearchOptions
from raysynth.home import home_location
from raysynth.pool.cache import cache_limit_bytes
from raysynth.storage import check_location, check_writable, exists, is_uri, join, read_text
from raysynth.tracking.stores import (
    artifact_location, check_artifact_client, check_experiment_name, check_tracking_store, default_tracking_uri,
)


# a search's name is one directory under the storage: no separators, no '..'
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def search_options(
    config: Config, tracking_uri: str | None = None, experiment: str | None = None, storage: str | None = None,
    name: str | None = None, resume: str | None = None, warm_start: str | None = None, optuna_storage: str | None = None,
    register: str | None = None,
) -> SearchOptions:
    """The options of a search from the command's flags, defaults filled in, each checked
    once: names (a plain name, a free one unless resumed), ``--resume`` (with nothing to
    resume, or ``auto``: resume if the search exists), ``--register``, a bucket home's
    tracking store, and the storage (written to, so a missing bucket or a read-only mount
    fails here). ``resume``: None, ``'yes'`` or ``'auto'``."""
    if resume not in (None, "yes", "auto"):
        raise ConfigError(f"--resume: takes no value or 'auto', got '{resume}'")
    if resume and not name:
        raise ConfigError(f"--resume{' auto' if resume == 'auto' else ''} needs --name of the search to resume")
    if register is not None and not NAME.fullmatch(register):
        raise ConfigError(f"--register: '{register}' is not a plain model name (letters, digits, '.', '_', '-')")
    if register and not config.search.final_eval:
        raise ConfigError("--register: needs search.final_eval (the registered model is the best config's final retraining)")
    if name is not None and not NAME.fullmatch(name):
        raise ConfigError(f"--name: '{name}' is not a plain name (letters, digits, '.', '_', '-'; no '/' or '..')")
    home = home_location()
    if is_uri(home):
        check_writable(home, "RAYSYNTH_HOME")
        if tracking_uri is None:  # the default store: sqlite on this machine, lost with a replaced head
            raise ConfigError(
                f"--tracking-uri: RAYSYNTH_HOME is a bucket ({home}) but MLflow's default store is sqlite on this "
                "machine's disk, lost with the head; pass a tracking server (--tracking-uri http://...) or an "
                "explicit sqlite:/// path on storage that outlives the head"
            )
    tracking_flag = "--tracking-uri" if tracking_uri or "MLFLOW_TRACKING_URI" not in os.environ else "MLFLOW_TRACKING_URI"
    tracking_uri = tracking_uri or default_tracking_uri()
    check_tracking_store(tracking_uri, tracking_flag)  # a known scheme that persists; a server that answers
    experiment = experiment if experiment is not None else config.dataset
    check_experiment_name(experiment)
    if optuna_storage is not None:
        check_study_storage(optuna_storage)
    storage = check_location(storage, "--storage") if storage else join(home, "tune")
    check_writable(storage, "--storage")  # reachable (bucket, credentials) before it is read
    name = name or f"{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    started = exists(join(storage, name))
    if resume == "auto":  # a re-submitted job: continue what an earlier attempt started, if any
        resume = "yes" if started else None
    if resume and not started:
        raise ConfigError(f"--resume: no search named '{name}' under {storage}")
    if not resume and started:
        raise ConfigError(f"--name: a search named '{name}' already exists under {storage}; add --resume to continue it, or choose another name")
    return SearchOptions(
        tracking_uri=tracking_uri, experiment=experiment, storage=storage,
        name=name, resume=bool(resume), warm_start=warm_start, optuna_storage=optuna_storage, register=register,
    )


def preflight(config: Config, options: SearchOptions, classes: list[str]) -> None:
    """What the config and the options say together, before anything is started or
    written: quality settings for classes the dataset does not have, FAISS missing where
    static partitions are needed, an unreachable tracking server, a resume with another
    config (checked first). Each a one-line ConfigError (exit 2). ``classes``: the dataset's."""
    if options.resume:
        _check_resume(config, options)
    check_quality_classes(config.pool.quality, classes)
    if config.partition.method == "static" and any(o.needs_partitions for o in parse_loss(config.loss)):
        check_faiss()
    if is_uri(home_location()):  # the nodes' pool caches are bounded by RAYSYNTH_CACHE_GB
        cache_limit_bytes()
    if options.tracking_uri.startswith("sqlite:///"):  # MLflow creates the database, not its directory
        Path(options.tracking_uri[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    check_artifact_client(artifact_location(options.tracking_uri, options.experiment))


def check_study_storage(url: str, flag: str = "--optuna-storage") -> None:
    """An RDB URL Optuna can open (SQLAlchemy's form, a dialect whose driver is installed),
    checked without connecting."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except ArgumentError:
        raise ConfigError(f"{flag}: '{url}' is not a database URL (e.g. sqlite:////abs/path/optuna.db, "
                          "postgresql://user@host/db)") from None
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"{flag}: {url}: no SQLAlchemy driver for it here ({exc})") from None
    if parsed.drivername.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        raise ConfigError(f"{flag}: {url} is an in-memory database that loses the study; give a file: sqlite:///<path>")


def _check_resume(config: Config, options: SearchOptions) -> None:
    """A resumed search continues with exactly what it was started with: the config
    (concurrency included: Tune's restored searcher state assumes it), the MLflow
    experiment and the tracking store its runs live in."""
    record = options.config_record
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
