"""An on-disk cache of built datasets: one ``.npz`` per (name, split, seed, options, version).

Rendering 3,600 emoji or decoding 70k Fashion-MNIST images is worth doing once. The file holds the
arrays plus one JSON header (as a numpy unicode scalar) for the strings, so it loads with
``allow_pickle=False`` and cannot run code. Writes go to a temporary file first and are moved into
place with :func:`os.replace`, so a killed process never leaves a half-written cache file behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.dataset import ImageDataset
from zoo.errors import DataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_HEADER_FIELDS = ("name", "split", "class_names", "captions", "license", "source", "meta", "info")


def sslzoo_home() -> Path:
    """``$SSLZOO_HOME`` (read at call time, so tests can point it elsewhere) or ``~/.cache/sslzoo``."""
    return Path(os.environ.get("SSLZOO_HOME") or Path.home() / ".cache" / "sslzoo").expanduser()


def cache_path(
    name: str,
    split: str,
    seed: int,
    *,
    version: int,
    options: dict[str, Any],
    stamps: list[Any] | None = None,
) -> Path:
    """Where the dataset built with these arguments is cached.

    Options are hashed (with the builder and file-format versions, and ``stamps`` of the source files)
    so the file name stays short but a different option value or an upgraded source package never
    reuses the wrong file.
    """
    key_data = {"options": options, "v": version, "fmt": FORMAT_VERSION, "sources": stamps or []}
    try:
        key = json.dumps(key_data, sort_keys=True)
    except TypeError as err:
        raise DataError(f"{name}: options must be JSON values to be cached: {options}") from err
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return sslzoo_home() / "data" / name / f"{split}-seed{seed}-{digest}.npz"


def save(dataset: ImageDataset, path: Path) -> None:
    """Write ``dataset`` to ``path`` atomically."""
    header = {key: getattr(dataset, key) for key in _HEADER_FIELDS}
    arrays: dict[str, Any] = {"images": dataset.images, "header": np.array(json.dumps(header))}
    if dataset.labels is not None:
        arrays["labels"] = dataset.labels
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a cache is as readable as its folder
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> ImageDataset | None:
    """The dataset cached at ``path``, or ``None`` when there is none or it cannot be read."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            labels = data["labels"] if "labels" in data.files else None
            return ImageDataset(images=data["images"], labels=labels, **header)
    except (OSError, ValueError, KeyError, TypeError, DataError) as err:
        log.warning("ignoring unreadable cache file %s (%s); rebuilding", path, err)
        return None
