"""Search algorithms, one file each, registered by name (see ``base``); adding a searcher
is adding a file to this folder."""

from raysynth.registry import import_modules
from raysynth.search.searchers.base import SEARCHERS, SearcherSpec, build_searcher, register_searcher

import_modules(__name__)

__all__ = ["SEARCHERS", "SearcherSpec", "build_searcher", "register_searcher"]
