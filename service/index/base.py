"""The storage interface of the vector index, so a vector database can replace FAISS + SQLite.

The service talks to indexes only through :class:`VectorIndex` and :class:`IndexStore`. The default
implementation (:mod:`service.index.faiss_sqlite`) keeps vectors in FAISS and everything durable in
SQLite; a Qdrant or Milvus store needs the same few methods: upsert, delete, search with an equality
filter on JSON metadata, get, count, stats.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

KINDS = ("flat", "hnsw")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ID_MAX_CHARS = 512

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class IndexSpec:
    """What an index is bound to: one embedding space, one dimension, one metric, one structure.

    Attributes:
        name: The index's name (letters, digits, '.', '_', '-').
        embedding_space: The space id of every vector it holds (a registry entry's ``embedding_space``).
        dim: The vectors' width.
        metric: ``cosine`` (vectors stored unit-length, scores are cosines) or ``dot``.
        kind: ``flat`` (exact inner product) or ``hnsw`` (approximate, faster on large indexes).
        model: The registry reference that created it, for people reading ``/index/stats``.
        hnsw_m: HNSW graph degree.
        ef_construction: HNSW build-time beam width.
        ef_search: HNSW query-time beam width (raised to ``k`` when ``k`` is larger).
    """

    name: str
    embedding_space: str
    dim: int
    metric: str = "cosine"
    kind: str = "flat"
    model: str | None = None
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"invalid index name {self.name!r}: use letters, digits, '.', '_', '-' (max 64)")
        if self.kind not in KINDS:
            raise ValueError(f"index kind must be one of {KINDS}, got {self.kind!r}")
        if self.metric not in ("cosine", "dot"):
            raise ValueError(f"metric must be 'cosine' or 'dot', got {self.metric!r}")
        if self.dim < 1:
            raise ValueError(f"dim must be positive, got {self.dim}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> IndexSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(raw))


@dataclass(frozen=True)
class MetadataFilter:
    """Equality on JSON metadata fields (dotted paths reach nested objects), all of which must hold.

    ``exists`` lists fields that must be present and not null (k-NN classification needs labels).
    """

    equals: Mapping[str, Scalar] = field(default_factory=dict)
    exists: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.equals or self.exists)


@dataclass(frozen=True)
class Hit:
    """One search result."""

    id: str
    score: float
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Item:
    """One stored item, as ``get`` returns it."""

    id: str
    metadata: dict[str, Any]
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class UpsertResult:
    """How many ids were new and how many replaced an existing item."""

    added: int
    replaced: int


class VectorIndex(Protocol):
    """One named index. Every write is durable when the method returns."""

    spec: IndexSpec

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]]) -> UpsertResult:
        """Insert or replace items by id."""
        ...

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Remove items; returns the ids that existed."""
        ...

    def search(self, queries: np.ndarray, k: int, where: MetadataFilter | None = None) -> list[list[Hit]]:
        """The ``k`` best items per query (highest inner product first), among those matching ``where``."""
        ...

    def get(self, ids: Sequence[str], with_vectors: bool = False) -> list[Item | None]:
        """Items by id, ``None`` for unknown ids."""
        ...

    def count(self) -> int:
        """Live items."""
        ...

    def stats(self) -> dict[str, Any]:
        """Spec, count and structure details."""
        ...

    def close(self) -> None:
        """Flush (snapshot) and release resources."""
        ...


class IndexStore(Protocol):
    """Several named indexes under one roof."""

    def open(self, name: str) -> VectorIndex | None:
        """The index called ``name``, or ``None``."""
        ...

    def create(self, spec: IndexSpec) -> VectorIndex:
        """A new, empty index (durable when this returns)."""
        ...

    def drop(self, name: str) -> bool:
        """Delete an index and its data; whether it existed."""
        ...

    def names(self) -> list[str]:
        """Every index name."""
        ...

    def close(self) -> None:
        """Close every open index."""
        ...
