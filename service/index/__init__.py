"""Vector indexes behind a small interface (:mod:`service.index.base`); FAISS + SQLite by default."""

from service.index.base import Hit, IndexSpec, IndexStore, Item, MetadataFilter, UpsertResult, VectorIndex
from service.index.filters import parse_filter
from service.index.manager import LocalIndexStore

__all__ = ["Hit", "IndexSpec", "IndexStore", "Item", "LocalIndexStore", "MetadataFilter", "UpsertResult",
           "VectorIndex", "parse_filter"]
