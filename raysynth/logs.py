"""raysynth's console log: one format for the driver and for Ray workers whose stdout Ray
forwards to the driver (the generator fit, generation actors), and Ray's own chatter kept
off the console.

Ray logs at INFO a line per trial checkpoint ("Checkpoint successfully created at: …"),
per Ray Train report ("Reporting training result …"), Tune's experiment box and Ray
Data's progress blocks. By default (:func:`quiet_ray`) they go to log files, not to the
terminal: Tune's and Ray Train's to ``raysynth-ray-<pid>.log`` beside Ray's own logs
(``/tmp/ray/session_latest/logs``; ``$TMPDIR/raysynth-logs`` when Ray has not started),
Ray Train workers' to Ray Train's files (``logs/train/``), Ray Data's to ``ray-data.log``.
``--verbose`` (``RAYSYNTH_VERBOSE=1``, handed to every worker) brings them back.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from pathlib import Path

VERBOSE_ENV = "RAYSYNTH_VERBOSE"
# loggers whose INFO lines are Ray's per-trial/per-checkpoint chatter
RAY_CHATTER = ("ray.tune", "ray.train")


def setup_logging(quiet: bool = False, verbose: bool | None = None) -> None:
    """INFO lines of the ``raysynth`` loggers on stdout (WARNING with ``quiet``), printed
    once: Ray configures the root logger too, so raysynth's does not propagate.
    ``verbose`` (None: keep what the environment says) lets Ray's chatter through."""
    logger = logging.getLogger("raysynth")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    if verbose is not None:
        os.environ[VERBOSE_ENV] = "1" if verbose else "0"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def ray_log_dir() -> Path:
    """Where this process writes the Ray chatter it keeps off the console."""
    try:
        import ray._private.worker as ray_worker

        node = ray_worker.global_worker.node
        if node is not None:
            return Path(node.get_logs_dir_path())
    except (ImportError, AttributeError):  # Ray not started here, or moved its private API
        pass
    return Path(tempfile.gettempdir()) / "raysynth-logs"


class RayChatterFilter(logging.Filter):
    """Drops INFO records that Ray Train and Tune code emits, recognised by the file they
    come from: some of Ray's loggers are named after their file and hang off the root
    logger (Ray Train's "Reporting training result …"), out of reach of ``ray.train``'s
    own level filter."""

    SOURCE = re.compile(r"[/\\]ray[/\\](train|tune)[/\\]")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not self.SOURCE.search(record.pathname or "")


def _console_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if "File" not in type(h).__name__]  # Ray's SessionFileHandler too


def quiet_ray() -> None:
    """Ray's chatter to log files, not the console (no-op with ``RAYSYNTH_VERBOSE=1``).

    Called in the driver once Ray runs and in every Ray worker raysynth starts (through
    :func:`raysynth.home.adopt_home`). A logger Ray configured with handlers of its own
    (Ray Train's ``ray.train`` in a Train worker) keeps them; the console handlers of the
    root and ``ray`` loggers get a :class:`RayChatterFilter`; Ray Data's console handler
    is raised to WARNING (its file keeps all).
    """
    if verbose():
        return
    handler = None
    for name in RAY_CHATTER:
        logger = logging.getLogger(name)
        if logger.handlers:
            continue
        if handler is None:
            directory = ray_log_dir()
            directory.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(directory / f"raysynth-ray-{os.getpid()}.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    for h in _console_handlers(logging.getLogger()) + _console_handlers(logging.getLogger("ray")):
        if not any(isinstance(f, RayChatterFilter) for f in h.filters):
            h.addFilter(RayChatterFilter())
    # Tune's experiment box ("Configuration for experiment", "View detailed results
    # here") is print()ed by its new console output even at verbose=0; the legacy
    # reporter prints nothing at verbose=0
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # "Started monitoring ...", "Creating initial ... tables", "Validating input example ..."
    for name in ("mlflow.system_metrics", "mlflow.store", "mlflow.pyfunc", "mlflow.models"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        import ray.data  # noqa: F401  (configures the "ray.data" logger's handlers)

        for h in _console_handlers(logging.getLogger("ray.data")):
            h.setLevel(logging.WARNING)  # its progress blocks are INFO; raysynth logs generation progress
    except ImportError:
        pass


def train_logging_config():
    """Ray Train's ``RunConfig.logging_config``: its workers' console at WARNING unless
    verbose (Ray Train's own files keep every line)."""
    from ray.train import LoggingConfig

    return LoggingConfig(log_level="INFO" if verbose() else "WARNING")
