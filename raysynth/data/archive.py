"""Safe extraction of dataset archives (``CUB_200_2011.tgz``, ``102flowers.tgz``, zips).

``--data-root`` may name an archive; it is extracted once under
``$RAYSYNTH_HOME/datasets/extracted/<name>-<hash>`` and the dataset is read from there.
Extraction refuses, before writing anything, every member that would land outside the
target: absolute paths, ``..`` components, symbolic and hard links that point outside,
device files. (Python's ``tarfile`` "data" filter does the same for tars; the explicit
check also covers zips and gives one clear line naming the member.)
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from pathlib import Path

from raysynth.atomic import atomic_directory
from raysynth.config import ConfigError
from raysynth.home import fingerprint, raysynth_home

SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")


def is_archive(path: str | Path) -> bool:
    return str(path).lower().endswith(SUFFIXES) and Path(path).is_file()


def _inside(target: Path, name: str) -> bool:
    if not name or os.path.isabs(name) or name.startswith(("/", "\\")):
        return False
    resolved = (target / name).resolve()
    return resolved == target or target in resolved.parents


def check_members(archive: Path, target: Path) -> None:
    """ConfigError for the first member that would escape ``target``."""
    target = target.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if not _inside(target, name):
                    raise ConfigError(f"data.root: archive {archive} member '{name}' would extract outside {target}; refused")
        return
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            if not _inside(target, m.name):
                raise ConfigError(f"data.root: archive {archive} member '{m.name}' would extract outside {target}; refused")
            if m.issym() or m.islnk():
                base = (target / m.name).parent if m.issym() else target
                if os.path.isabs(m.linkname) or not _inside(target, os.path.relpath((base / m.linkname).resolve(), target)):
                    raise ConfigError(f"data.root: archive {archive} link '{m.name}' -> '{m.linkname}' points outside {target}; refused")
            if m.isdev() or m.isfifo():
                raise ConfigError(f"data.root: archive {archive} member '{m.name}' is a device or pipe; refused")


def safe_extract(archive: str | Path, target: str | Path) -> Path:
    """Extract ``archive`` into ``target`` (checked first, then extracted into a temporary
    directory renamed into place: nothing half-extracted is left behind)."""
    archive, target = Path(archive), Path(target)
    with atomic_directory(target) as tmp:
        check_members(archive, tmp)
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
    return target


def extracted_root(archive: str | Path) -> Path:
    """The dataset directory inside the (once) extracted archive: its single top-level
    directory, or the extraction directory itself."""
    archive = Path(archive).expanduser().resolve()
    if not (zipfile.is_zipfile(archive) or tarfile.is_tarfile(archive)):
        raise ConfigError(f"data.root: {archive} is named like an archive but is not a readable tar or zip file")
    stat = archive.stat()
    target = raysynth_home() / "datasets" / "extracted" / f"{archive.name.split('.')[0]}-{fingerprint(str(archive), stat.st_size, int(stat.st_mtime))}"
    if not target.is_dir():
        try:
            safe_extract(archive, target)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise ConfigError(f"data.root: cannot extract {archive} ({type(exc).__name__}: {exc})") from None
    entries = [p for p in target.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else target
