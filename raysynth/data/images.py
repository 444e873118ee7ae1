"""Decoding image files once: threads, a resize + centre crop, and a uint8 cache.

Real datasets are decoded in parallel (PIL releases the GIL while decoding), resized so
the shorter side is ``size`` and centre-cropped to ``size x size``, and cached as one
uint8 ``.npy`` per (file list, size) under ``$RAYSYNTH_HOME/datasets``: the second
load of a split is a memory map, and training never decodes the few shots again (they
live in memory as tensors; augmentation is on tensors).

A file that cannot be decoded is an error naming the file, not a silent skip: the
validation and test splits are fixed by the file lists, and dropping an image would
change them without telling anyone.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from raysynth.atomic import atomic_file
from raysynth.config import ConfigError
from raysynth.home import fingerprint, raysynth_home
from raysynth.storage import expand

log = logging.getLogger(__name__)


@functools.cache
def _bombs_are_errors() -> None:
    """Pillow warns about an image over its pixel limit (and raises only past twice it):
    :func:`decode` refuses every such image in one line instead, so the warning is off."""
    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def decode(path: Path, size: int) -> np.ndarray:
    """One image as uint8 3 x size x size (RGB, shorter side resized, centre crop)."""
    from PIL import Image, UnidentifiedImageError

    _bombs_are_errors()
    try:
        with Image.open(path) as im:
            if im.width * im.height > Image.MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(f"{im.width} x {im.height}")
            return square(im, size)
    except FileNotFoundError:
        raise ConfigError(f"data.root: image file missing: {path}") from None
    except Image.DecompressionBombError:
        raise ConfigError(f"data.root: image {path} declares more than Pillow's limit of {Image.MAX_IMAGE_PIXELS:,} "
                          "pixels (a decompression bomb?); remove or replace it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ConfigError(f"data.root: cannot decode image {path} ({type(exc).__name__}); remove or replace it") from None


def square(im, size: int) -> np.ndarray:
    """A PIL image as uint8 3 x size x size: RGB, the shorter side resized (bicubic) to
    ``size``, the centre cropped. How every dataset decodes its files, and how
    ``raysynth predict`` reads the files it classifies."""
    from PIL import Image

    im = im.convert("RGB")
    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    im = im.crop((left, top, left + size, top + size))
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_images(paths: list[Path], size: int, name: str, workers: int | None = None) -> np.ndarray:
    """uint8 N x 3 x size x size for ``paths``, decoded once and cached."""
    key = fingerprint("images-v1", name, size, [str(p) for p in paths], [p.stat().st_size if p.exists() else -1 for p in paths])
    cache = raysynth_home() / "datasets" / f"{name}-{size}-{key}.npy"
    if cache.is_file():
        return np.load(cache, mmap_mode="r", allow_pickle=False)
    workers = workers or min(16, (os.cpu_count() or 1) * 2)
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    start, last = time.perf_counter(), time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for i, image in enumerate(pool.map(lambda p: decode(p, size), paths)):
            out[i] = image
            if time.perf_counter() - last > 10:
                last = time.perf_counter()
                rate = (i + 1) / (last - start)
                log.info("%s: decoded %d/%d images (%.0f/s, ETA %.0f s)", name, i + 1, len(paths), rate, (len(paths) - i - 1) / rate)
    cache.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a name
            np.save(f, out, allow_pickle=False)

    atomic_file(cache, write)
    log.info("%s: decoded %d images in %.1f s (cached in %s)", name, len(paths), time.perf_counter() - start, cache)
    return out


def readable_class_name(raw: str) -> str:
    """'001.Black_footed_Albatross' -> 'black footed albatross'."""
    name = raw.split(".", 1)[1] if "." in raw and raw.split(".", 1)[0].isdigit() else raw
    return " ".join(name.replace("_", " ").split()).lower()


def dataset_root(root: str, dataset: str, where: str) -> Path:
    """``--data-root`` as a directory: an archive is safely extracted once."""
    from raysynth.data.archive import extracted_root, is_archive

    path = expand(root, "data.root")
    return extracted_root(path) if is_archive(path) else path


def require_files(root: Path, files: list[str], dataset: str, where: str) -> None:
    """ConfigError naming the first missing file and where the dataset comes from."""
    if not root.is_dir():
        raise ConfigError(f"data.root: {dataset} not found: {root} is not a directory; {where}")
    for name in files:
        if not (root / name).exists():
            raise ConfigError(f"data.root: {dataset} incomplete: {root / name} is missing; {where}")
