"""Registries of dataset builders: one decorator per kind, no branching on names.

Two kinds exist. A *dataset* (``shapes``, ``emoji`` ...) is a name whose builder makes it from
nothing but installed files. A *source* (``folder:``, ``captions:``) is a prefix whose builder reads
the path after it. Each registration records its splits and its options (taken from the builder's
keyword-only parameters), so bad input fails before any work with a message naming what is valid.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from zoo.data.dataset import ImageDataset
from zoo.errors import DataError, DatasetNotAvailableError
from zoo.naming import NameRegistry

Builder = Callable[..., ImageDataset]
F = TypeVar("F", bound=Builder)


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry knows about one builder.

    Attributes:
        name: The dataset name, or the source prefix without its colon.
        builder: ``builder(split, seed=..., **options)``; sources get ``builder(path, split, ...)``.
        splits: The splits it can build; the first is the natural default.
        version: Bumped when the builder's output changes, so stale cache files are not reused.
        sources: Returns the installed files the dataset is made from (their size and mtime join the
            cache key, so a package upgrade rebuilds it); raises :class:`DatasetNotAvailableError`
            when they are missing.
        cacheable: Whether results may be cached (not for user data, which changes under us).
        seeded: Whether ``seed`` changes the output; if not, every seed shares one cache file.
        placeholder: For a source, what follows the colon in its documented form (``PATH``, ``FILE``).
    """

    name: str
    builder: Builder
    splits: tuple[str, ...]
    version: int
    sources: Callable[[], Sequence[Path]] | None
    cacheable: bool
    seeded: bool = True
    placeholder: str = ""

    @property
    def options(self) -> dict[str, Any]:
        """The builder's options and their defaults (its keyword-only parameters but ``seed``)."""
        params = inspect.signature(self.builder).parameters.values()
        return {
            p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "seed"
        }

    def bind_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """All options with defaults filled in; an unknown option is a :class:`DataError`."""
        valid = self.options
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise DataError(f"{self.name}: unknown option(s) {unknown}; valid options: {sorted(valid)}")
        return {**valid, **options}

    def check_split(self, split: str) -> None:
        """Raise a :class:`DataError` naming the valid splits if ``split`` is not one of them."""
        if split not in self.splits:
            raise DataError(f"{self.name}: unknown split {split!r}; valid splits: {list(self.splits)}")


DATASETS: NameRegistry[DatasetSpec] = NameRegistry("dataset")
SOURCES: NameRegistry[DatasetSpec] = NameRegistry("data source")


def _register(
    table: NameRegistry[DatasetSpec],
    *,
    name: str,
    splits: tuple[str, ...],
    version: int,
    sources: Callable[[], Sequence[Path]] | None,
    cacheable: bool,
    seeded: bool = True,
    placeholder: str = "",
) -> Callable[[F], F]:
    def decorator(builder: F) -> F:
        spec = DatasetSpec(name, builder, tuple(splits), version, sources, cacheable, seeded, placeholder)
        table.add(name, spec, origin=builder)
        return builder

    return decorator


def register_dataset(
    name: str,
    *,
    splits: tuple[str, ...] = ("train", "test"),
    version: int = 1,
    sources: Callable[[], Sequence[Path]] | None = None,
    seeded: bool = True,
) -> Callable[[F], F]:
    """Register a builder ``fn(split, *, seed, **options) -> ImageDataset`` under ``name``.

    Args:
        name: The name users pass to :func:`load_dataset`.
        splits: The splits the builder accepts.
        version: Part of the cache key; bump it when the builder's output changes.
        sources: Optional function returning the installed files it reads, or raising
            :class:`DatasetNotAvailableError` when they are missing.
        seeded: ``False`` for fixed data (an official split), so all seeds share one cache file.
    """
    return _register(
        DATASETS, name=name, splits=splits, version=version, sources=sources, cacheable=True, seeded=seeded
    )


def register_source(
    prefix: str, *, splits: tuple[str, ...] = ("all", "train"), placeholder: str = "PATH"
) -> Callable[[F], F]:
    """Register a builder ``fn(path, split, *, seed, **options)`` for references ``prefix:PATH``.

    Args:
        prefix: The part before the colon, e.g. ``folder``.
        splits: The splits it accepts (user data is unsplit, so ``all`` and ``train`` by default).
        placeholder: How the documented form names the path, e.g. ``FILE`` in ``captions:FILE``.
    """
    return _register(
        SOURCES,
        name=prefix,
        splits=splits,
        version=1,
        sources=None,
        cacheable=False,
        placeholder=placeholder,
    )


def list_datasets() -> list[str]:
    """Names of the registered datasets (sources such as ``folder:PATH`` are forms, not names)."""
    return DATASETS.names()


def source_forms() -> list[str]:
    """The ``prefix:PATH`` forms users can pass instead of a name."""
    return [f"{prefix}:{SOURCES.get(prefix).placeholder}" for prefix in SOURCES.names()]


def resolve(name: str) -> tuple[DatasetSpec, Path | None]:
    """The spec for ``name`` and, for a ``prefix:PATH`` reference, the path.

    Raises:
        UnknownNameError: Neither a registered name nor a known ``prefix:PATH`` form; the message
            lists both so the user can pick the right one.
    """
    prefix, sep, rest = name.partition(":")
    if name not in DATASETS and sep and prefix in SOURCES and rest:
        return SOURCES.get(prefix), Path(rest).expanduser()
    hint = f"or load your own data with one of: {', '.join(source_forms())}"
    return DATASETS.get(name, hint=hint), None


def dataset_available(name: str) -> bool:
    """Whether ``name``'s source files are installed (for ``pytest.mark.skipif`` and the CLI)."""
    spec, _ = resolve(name)
    if spec.sources is None:
        return True
    try:
        spec.sources()
    except DatasetNotAvailableError:
        return False
    return True
