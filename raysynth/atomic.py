"""Write a directory completely or not at all: into a temporary sibling, then rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_directory(final: Path, replace: bool = False):
    """Yield a temporary directory next to ``final``; on success it is renamed to
    ``final`` (dropped if a concurrent writer got there first — the contents are the
    same by construction — unless ``replace``: an earlier ``final`` is removed first), on
    any error it is removed. Readers never see a partial one."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield tmp
        if replace and final.exists():
            shutil.rmtree(final)
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.exists():  # not a concurrent writer's finished copy: a real error
                raise
            shutil.rmtree(tmp)  # another process renamed the same contents into place first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_file(path: Path, write) -> None:
    """``write(tmp_path)`` into a temporary name in the same directory, then rename it to
    ``path``: readers see the whole file or none."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
