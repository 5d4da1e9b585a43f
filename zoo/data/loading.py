"""``load_dataset``: resolve a name, validate split and options, then build or read the cache."""

from __future__ import annotations

import logging
import time
from typing import Any

from zoo.data import cache as _cache
from zoo.data.dataset import ImageDataset
from zoo.data.registry import resolve

log = logging.getLogger(__name__)


def load_dataset(
    name: str, split: str = "train", *, seed: int = 0, cache: bool = True, **options: Any
) -> ImageDataset:
    """Load one split of a registered dataset, or of user data given as ``folder:PATH``/``captions:FILE``.

    Args:
        name: A name from :func:`list_datasets`, or ``folder:PATH`` / ``captions:FILE``.
        split: One of the dataset's splits (``"train"``, ``"test"``, ``"all"``, ``"heldout"`` ...).
        seed: Seeds generation and split assignment; the same seed always gives the same data.
        cache: Read and write ``$SSLZOO_HOME/data/<name>/``. User data is never cached, because the
            files can change while the path stays the same.
        **options: Builder options such as ``image_size`` or ``n``; unknown ones are rejected.

    Raises:
        UnknownNameError: ``name`` is neither registered nor a ``prefix:PATH`` form.
        DataError: Unknown split or option, or user data that holds no usable image.
        DatasetNotAvailableError: The installed files the dataset is made from are missing.
    """
    spec, path = resolve(name)
    spec.check_split(split)
    bound = spec.bind_options(options)
    files = spec.sources() if spec.sources is not None else []
    args = (split,) if path is None else (path, split)
    if not (cache and spec.cacheable):
        return spec.builder(*args, seed=seed, **bound)

    stamps = [[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    key_seed = seed if spec.seeded else 0
    file = _cache.cache_path(spec.name, split, key_seed, version=spec.version, options=bound, stamps=stamps)
    cached = _cache.load(file)
    if cached is not None:
        return cached
    start = time.perf_counter()
    dataset = spec.builder(*args, seed=seed, **bound)
    log.info("built %s/%s (%d images) in %.1f s", name, split, len(dataset), time.perf_counter() - start)
    _cache.save(dataset, file)
    return dataset
