"""Datasets that need no download: generated, bundled, read from installed packages, or the user's own.

>>> from zoo.data import list_datasets, load_dataset
>>> list_datasets()
['clipart', 'digits', 'emoji', 'fashion-mnist', 'shapes']
>>> ds = load_dataset("shapes", "train", n=100)

Every source returns an :class:`ImageDataset`. Builders register themselves with
:func:`register_dataset` (a name) or :func:`register_source` (a ``prefix:PATH`` form such as
``folder:PATH`` and ``captions:FILE``); :func:`load_dataset` validates the split and options, then
builds or reads ``$SSLZOO_HOME/data/<name>/``.
"""

from __future__ import annotations

# Importing the builder modules registers them.
from zoo.data import captions, clipart, digits, emoji, fashion_mnist, folder, photos, shapes  # noqa: F401
from zoo.data.dataset import ImageDataset
from zoo.data.loading import load_dataset
from zoo.data.registry import (
    dataset_available,
    list_datasets,
    register_dataset,
    register_source,
    source_forms,
)

__all__ = [
    "ImageDataset",
    "dataset_available",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "register_source",
    "source_forms",
]
