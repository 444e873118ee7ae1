"""Named registries of components (datasets, generators, objectives, searchers,
weightings, schedulers), filled by the modules of a registry package.

A registry package calls :func:`import_modules` in its ``__init__``: every module in the
package folder is imported, and each registers what it defines. Adding a component is
adding one file; a name registered twice is an error (as in peft).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, Iterator, TypeVar

from raysynth.config import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """name -> component, with one-line errors that list the known names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._items[name] = item
        return item

    def register(self, name: str):
        """Decorator form of :meth:`add`."""

        def wrap(item: T) -> T:
            return self.add(name, item)

        return wrap

    def get(self, name: str, where: str) -> T:
        """The component called ``name``, or a ConfigError naming the field ``where``."""
        if name not in self._items:
            raise ConfigError(f"{where}: unknown {self.kind} '{name}' (known: {self.known()})")
        return self._items[name]

    def known(self) -> str:
        return ", ".join(sorted(self._items))

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def items(self):
        return self._items.items()


def import_modules(package: str) -> list[str]:
    """Import every module of ``package`` (each registers its components); returns their
    names. Modules whose name starts with '_' are skipped."""
    pkg = importlib.import_module(package)
    names = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
            names.append(info.name)
    return names
