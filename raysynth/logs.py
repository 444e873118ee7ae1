"""raysynth's console log: one format for the driver and for Ray workers whose stdout Ray
forwards to the driver (the generator fit, generation actors)."""

from __future__ import annotations

import logging
import sys


def setup_logging(quiet: bool = False) -> None:
    """INFO lines of the ``raysynth`` loggers on stdout (WARNING with ``quiet``), printed
    once: Ray configures the root logger too, so raysynth's does not propagate."""
    logger = logging.getLogger("raysynth")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
