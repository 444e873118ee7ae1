"""Locations every node sees: a local path (a shared mount on a cluster) or an object
store URI (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``) reached through pyarrow's
filesystems, the way Ray Tune and Ray Train reach their ``storage_path``.

A location is a plain string: an absolute local path, or a URI. Credentials and
endpoints come from each store's own environment, as for Ray: for S3,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` and, for an
S3-compatible server (MinIO, moto), ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

# schemes of stores that every node of a cluster can reach (pyarrow also serves "mock://",
# an in-memory filesystem of one process: not a place to share anything)
REMOTE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")


def first_line(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def expand(text: str, what: str) -> Path:
    """A local path with ``~`` / ``~user`` expanded; a ``~user`` of no such user is a
    one-line ConfigError naming ``what`` (pathlib raises a bare RuntimeError)."""
    from raysynth.config import ConfigError

    try:
        return Path(text).expanduser()
    except RuntimeError:
        raise ConfigError(f"{what}: {text}: no home directory for '{Path(text).parts[0]}' (no such user?)") from None


def check_location(text: str, what: str) -> str:
    """``text`` as a location: an absolute local path (``file://`` and ``~`` allowed),
    or an object-store URI whose filesystem pyarrow can build here. Anything else is a
    one-line ConfigError naming ``what`` (the flag or variable)."""
    from raysynth.config import ConfigError

    scheme, sep, rest = str(text).partition("://")
    if not sep or scheme == "file":
        return str(expand(rest if sep else text, what).resolve())
    if scheme not in REMOTE_SCHEMES:
        raise ConfigError(f"{what}: no filesystem serves '{scheme}://' (give a local path, a shared mount, or one of {', '.join(s + '://' for s in REMOTE_SCHEMES)})")
    if not rest.split("/")[0]:
        raise ConfigError(f"{what}: {text} names no bucket")
    try:
        _filesystem(text)
    except Exception as exc:  # pyarrow: ArrowInvalid, OSError (no libjvm for hdfs), ...
        raise ConfigError(f"{what}: no filesystem serves {text} here ({first_line(exc)})") from None
    return str(text).rstrip("/")


@functools.lru_cache(maxsize=16)
def _filesystem(uri: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def _split(uri: str):
    """(pyarrow filesystem, path inside it) of a URI; filesystems are built once per
    bucket (building an S3 one may ask the store for the bucket's region)."""
    scheme, _, rest = uri.partition("://")
    bucket, _, path = rest.partition("/")
    fs, root = _filesystem(f"{scheme}://{bucket}")
    return fs, "/".join(p for p in (root.rstrip("/"), path.strip("/")) if p)


def join(location: str | Path, *parts: str) -> str:
    if not is_uri(location):
        return str(Path(location).joinpath(*parts))
    return "/".join([str(location).rstrip("/"), *(p.strip("/") for p in parts)])


def exists(location: str | Path) -> bool:
    if not is_uri(location):
        return Path(location).exists()
    import pyarrow.fs

    fs, path = _split(str(location))
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def read_text(location: str | Path) -> str:
    if not is_uri(location):
        return Path(location).read_text()
    fs, path = _split(str(location))
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def read_parquet(location: str | Path):
    """A parquet file as a pandas DataFrame, local or in an object store."""
    import pandas as pd

    if not is_uri(location):
        return pd.read_parquet(location)
    fs, path = _split(str(location))
    return pd.read_parquet(path, filesystem=fs)


def write_text(location: str | Path, text: str) -> None:
    """Write a whole file (an object store's PUT is atomic; a local file is renamed into place)."""
    if not is_uri(location):
        from raysynth.atomic import atomic_file

        Path(location).parent.mkdir(parents=True, exist_ok=True)
        atomic_file(Path(location), lambda tmp: Path(tmp).write_text(text))
        return
    fs, path = _split(str(location))
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def check_writable(location: str, what: str) -> None:
    """Write and remove a marker at ``location`` (a local path: in its nearest existing
    directory, creating nothing); a one-line ConfigError when that fails (a missing
    bucket, no credentials, a read-only mount)."""
    from raysynth.config import ConfigError

    marker = join(location, f".raysynth-write-check-{uuid.uuid4().hex[:8]}")
    try:
        if is_uri(location):
            write_text(marker, "")
            fs, path = _split(marker)
            fs.delete_file(path)
        else:  # nothing made: the nearest existing directory must take a new entry
            existing = Path(location).expanduser()
            while not existing.exists() and existing != existing.parent:
                existing = existing.parent
            if not existing.is_dir():
                raise NotADirectoryError(f"{existing} is not a directory")
            probe = existing / Path(marker).name
            probe.touch()
            probe.unlink()
    except Exception as exc:  # OSError locally; pyarrow raises OSError/ArrowException for stores
        raise ConfigError(f"{what}: cannot write to {location} ({first_line(exc)})") from None


def upload(local: Path, uri: str) -> None:
    """Copy a local file or directory tree to ``uri`` (pyarrow's ``copy_files``, file by
    file: a reader that must not see a partial directory waits for a marker written after
    it, see ``home.publish``)."""
    import pyarrow.fs

    fs, path = _split(uri)
    pyarrow.fs.copy_files(str(local), path, source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=fs)


def download(uri: str, local: Path) -> None:
    """Copy the file or directory tree at ``uri`` to ``local`` (which must not exist yet);
    written into a temporary sibling and renamed, so a reader sees all of it or nothing."""
    import pyarrow.fs

    from raysynth.atomic import atomic_directory, atomic_file

    fs, path = _split(uri)

    def copy(target) -> None:
        pyarrow.fs.copy_files(path, str(target), source_filesystem=fs, destination_filesystem=pyarrow.fs.LocalFileSystem())

    if fs.get_file_info(path).type == pyarrow.fs.FileType.File:
        local.parent.mkdir(parents=True, exist_ok=True)
        atomic_file(local, copy)
        return
    with atomic_directory(local) as tmp:
        copy(tmp)


def list_names(uri: str) -> list[str]:
    """Names of the files directly under ``uri`` (empty when it does not exist)."""
    import pyarrow.fs

    fs, path = _split(uri)
    selector = pyarrow.fs.FileSelector(path, allow_not_found=True)
    return sorted(e.base_name for e in fs.get_file_info(selector) if e.type == pyarrow.fs.FileType.File)


def tree_bytes(uri: str) -> int:
    """Bytes of every file under ``uri`` in an object store (0 when nothing is there)."""
    import pyarrow.fs

    fs, path = _split(uri)
    selector = pyarrow.fs.FileSelector(path, recursive=True, allow_not_found=True)
    return sum(e.size or 0 for e in fs.get_file_info(selector) if e.type == pyarrow.fs.FileType.File)


def remove(uri: str) -> None:
    """Delete a directory tree in an object store (nothing when it is not there)."""
    fs, path = _split(uri)
    try:
        fs.delete_dir(path)
    except FileNotFoundError:
        pass


def remove_file(location: str | Path) -> None:
    """Delete one file, local or in an object store (nothing when it is not there)."""
    if not is_uri(location):
        Path(location).unlink(missing_ok=True)
        return
    fs, path = _split(str(location))
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def local_cache_root() -> Path:
    """Where this node keeps its copies of a remote home (``RAYSYNTH_CACHE``, default
    ``~/.cache/raysynth``)."""
    return Path(os.environ.get("RAYSYNTH_CACHE", "~/.cache/raysynth")).expanduser().resolve()
