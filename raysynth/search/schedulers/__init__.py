"""Trial schedulers, one file each, registered by name (see ``base``); adding one is
adding a file to this folder."""

from raysynth.registry import import_modules
from raysynth.search.schedulers.base import SCHEDULERS, build_scheduler, register_scheduler

import_modules(__name__)

__all__ = ["SCHEDULERS", "build_scheduler", "register_scheduler"]
