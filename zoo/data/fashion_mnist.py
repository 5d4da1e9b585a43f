"""``fashion-mnist``: Zalando's 70k 28×28 clothing images, read from Debian's ``dataset-fashion-mnist``.

The IDX files are parsed directly (a dozen lines) rather than through a downloader, because nothing
may be fetched at run time. ``$SSLZOO_FASHION_MNIST_DIR`` points at another copy of the same files.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from zoo.data.dataset import ImageDataset
from zoo.data.registry import register_dataset
from zoo.data.sources import find_file, search_dirs
from zoo.errors import DataError

PACKAGE = "dataset-fashion-mnist"
ENV_VAR = "SSLZOO_FASHION_MNIST_DIR"
DEFAULT_DIRS = ("/usr/share/datasets/fashion-mnist",)
CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (plain or gzipped) into an array of its stated shape.

    Raises:
        DataError: The header does not describe unsigned bytes or the payload has the wrong size.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says {shape} but holds {data.size} bytes")
    return data.reshape(shape)


def _paths(split: str) -> tuple[Path, Path]:
    dirs = search_dirs(ENV_VAR, DEFAULT_DIRS)
    images, labels = _FILES[split]
    return find_file(images, dirs, package=PACKAGE), find_file(labels, dirs, package=PACKAGE)


def installed_files() -> list[Path]:
    """The four IDX files, or :class:`DatasetNotAvailableError` naming the paths and the apt command."""
    return [path for split in _FILES for path in _paths(split)]


@register_dataset("fashion-mnist", splits=("train", "test"), sources=installed_files, seeded=False)
def build_fashion_mnist(split: str, *, seed: int = 0) -> ImageDataset:
    """The official split: 60,000 train / 10,000 test. ``seed`` is accepted but changes nothing."""
    image_path, label_path = _paths(split)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or labels.shape != (len(images),):
        raise DataError(f"{image_path}: {images.shape} images do not match {labels.shape} labels")
    return ImageDataset(
        name="fashion-mnist",
        split=split,
        images=np.ascontiguousarray(images[..., None]),
        labels=labels.astype(np.int64),
        class_names=list(CLASS_NAMES),
        captions=None,
        license="MIT",
        source=f"Fashion-MNIST (Zalando Research) from Debian package {PACKAGE}: {image_path.parent}",
    )
