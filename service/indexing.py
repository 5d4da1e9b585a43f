"""Index endpoints: add, delete, drop, get, search, k-NN classification and stats.

Every index is bound at creation to one embedding space, dimension and metric; vectors from another
space are refused (409) and vectors of another width are a 400. Images and texts are embedded with
the request's model, or the model that created the index; raw vectors must say which space they are
in when they create or extend an index. Store calls block on fsync, so they run in worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.embedding import Embedder
from service.errors import BadRequest, Conflict, NotFound
from service.index import IndexSpec, IndexStore, MetadataFilter, VectorIndex, parse_filter
from service.index.base import KINDS, NAME_RE
from service.settings import Settings
from service.validation import check_count, check_ids, check_metadata, fit_vectors, one_source, parse_vectors


@dataclass(frozen=True)
class Vectors:
    """Vectors with the space they live in and where they came from."""

    values: np.ndarray
    space: str
    metric: str
    model: str | None


class Indexer:
    """The index endpoints over an :class:`~service.index.base.IndexStore`."""

    def __init__(self, store: IndexStore, embedder: Embedder, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings

    # -- helpers -----------------------------------------------------------------------------------
    def open(self, name: str) -> VectorIndex:
        """An existing index, or a 404 that lists the known ones."""
        index = self.store.open(self._name(name))
        if index is None:
            known = ", ".join(self.store.names()) or "none yet"
            raise NotFound(f"no index named {name!r} (known: {known}); POST /index/add creates one")
        return index

    @staticmethod
    def _name(name: str) -> str:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise BadRequest(f"invalid index name {name!r}: letters, digits, '.', '_', '-' (max 64)")
        return name

    def _space_metric(self, space: str) -> str | None:
        """The metric of a registry entry with this space (``None`` when no entry has it)."""
        for entry in self.embedder.runtime.registry.entries():
            try:
                if entry.embedding_space == space:
                    return entry.read_config().metric
            except Exception:  # a broken entry elsewhere must not fail this request
                continue
        return None

    async def vectors(self, *, images: Sequence[str] | None, texts: Sequence[str] | None,
                      vectors: Sequence[Sequence[float]] | None, model: str | None, embedding_space: str | None,
                      index: VectorIndex | None, what: str, metric: str = "cosine") -> Vectors:
        """Embed images or texts, or check raw vectors, for an index (existing or about to be created)."""
        source, items = one_source({"images": images, "texts": texts, "vectors": vectors}, what)
        if source == "vectors":
            check_count(items, "vectors", self.settings.max_items)
            raw = parse_vectors(items)  # type: ignore[arg-type]
            if index is not None:
                spec = index.spec
                if embedding_space is not None and embedding_space != spec.embedding_space:
                    raise Conflict(f"index {spec.name!r} holds space {spec.embedding_space}; these vectors are "
                                   f"from {embedding_space}")
                return Vectors(fit_vectors(raw, spec.dim, spec.metric), spec.embedding_space, spec.metric, None)
            if not embedding_space:
                raise BadRequest("raw vectors need 'embedding_space' (the id /embed returns) so the index can "
                                 "refuse vectors of another model")
            metric = self._space_metric(embedding_space) or metric
            return Vectors(fit_vectors(raw, raw.shape[1], metric), embedding_space, metric, None)
        if model is None and index is not None:
            model = index.spec.model
        if source == "images":
            loaded, values = await self.embedder.images(model, items)  # type: ignore[arg-type]
        else:
            loaded, values = await self.embedder.texts(model, items)  # type: ignore[arg-type]
        if embedding_space is not None and embedding_space != loaded.embedding_space:
            raise Conflict(f"'embedding_space' {embedding_space} does not match model {loaded.ref} "
                           f"({loaded.embedding_space})")
        return Vectors(values, loaded.embedding_space, loaded.config.metric, loaded.ref)

    @staticmethod
    def check_space(index: VectorIndex, vectors: Vectors) -> None:
        """Refuse vectors of another space or width than the index's."""
        spec = index.spec
        if vectors.space != spec.embedding_space:
            source = f"model {vectors.model}" if vectors.model else "these vectors"
            raise Conflict(f"index {spec.name!r} is bound to embedding space {spec.embedding_space} "
                           f"({spec.model or 'raw vectors'}); {source} are in {vectors.space}")
        if vectors.values.shape[1] != spec.dim:
            raise BadRequest(f"index {spec.name!r} holds {spec.dim}-d vectors; got {vectors.values.shape[1]}-d")

    # -- writes ------------------------------------------------------------------------------------
    async def add(self, name: str, ids: list[str] | None, metadata: list[Any] | None, kind: str | None,
                  **source: Any) -> dict[str, Any]:
        """``POST /index/add``: upsert by id; the first add creates the index, bound to its space."""
        if kind is not None and kind not in KINDS:
            raise BadRequest(f"'kind' must be one of {KINDS}")
        index = self.store.open(self._name(name))
        if index is not None and kind is not None and kind != index.spec.kind:
            raise Conflict(f"index {name!r} is {index.spec.kind}, not {kind}; drop it to change its kind")
        vectors = await self.vectors(index=index, what="index/add", **source)
        n = len(vectors.values)
        item_ids = check_ids(ids, n, self.settings.max_items)
        metas = check_metadata(metadata, n)
        if index is None:
            spec = IndexSpec(name=name, embedding_space=vectors.space, dim=int(vectors.values.shape[1]),
                             metric=vectors.metric, kind=kind or "flat", model=vectors.model)
            index = await asyncio.to_thread(self._create, spec)
        self.check_space(index, vectors)
        result = await asyncio.to_thread(index.upsert, item_ids, vectors.values, metas)
        return {"index": name, "added": result.added, "replaced": result.replaced, "count": index.count(),
                "embedding_space": index.spec.embedding_space}

    def _create(self, spec: IndexSpec) -> VectorIndex:
        try:
            return self.store.create(spec)
        except FileExistsError:  # a concurrent first add won the race: use its index
            return self.open(spec.name)

    async def delete(self, name: str, ids: list[str] | None) -> dict[str, Any]:
        """``POST /index/delete``: remove items by id."""
        index = self.open(name)
        check_count(ids, "ids", self.settings.max_items)
        assert ids is not None
        if not all(isinstance(i, str) for i in ids):
            raise BadRequest("ids must be strings")
        deleted = await asyncio.to_thread(index.delete, ids)
        found = set(deleted)
        return {"index": name, "deleted": len(deleted), "missing": [i for i in ids if i not in found],
                "count": index.count()}

    async def drop(self, name: str) -> dict[str, Any]:
        """``POST /index/drop``: delete a whole index."""
        self.open(name)
        return {"index": name, "dropped": await asyncio.to_thread(self.store.drop, name)}

    # -- reads -------------------------------------------------------------------------------------
    async def get(self, name: str, ids: list[str] | None, include_vectors: bool) -> dict[str, Any]:
        """``POST /index/get``: stored items by id."""
        index = self.open(name)
        check_count(ids, "ids", self.settings.max_items)
        assert ids is not None
        items = await asyncio.to_thread(index.get, ids, include_vectors)
        out = [None if item is None else {"id": item.id, "metadata": item.metadata,
                                          **({"vector": item.vector.tolist()} if item.vector is not None else {})}
               for item in items]
        return {"index": name, "items": out}

    def _filter(self, raw: dict[str, Any] | None, exists: tuple[str, ...] = ()) -> MetadataFilter:
        try:
            return parse_filter(raw, exists)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    async def search(self, name: str, k: int, where: dict[str, Any] | None, **source: Any) -> dict[str, Any]:
        """``POST /search``: the k nearest items per query, optionally among those matching a filter."""
        index = self.open(name)
        if not 1 <= k <= 1000:
            raise BadRequest("k must be between 1 and 1000")
        flt = self._filter(where)
        vectors = await self.vectors(index=index, what="search", **source)
        self.check_space(index, vectors)
        hits = await asyncio.to_thread(index.search, vectors.values, k, flt)
        return {"index": name, "embedding_space": index.spec.embedding_space, "metric": index.spec.metric,
                "results": [[{"id": h.id, "score": h.score, "metadata": h.metadata} for h in row] for row in hits]}

    async def knn_classify(self, name: str, k: int, label_field: str, temperature: float,
                           where: dict[str, Any] | None, **source: Any) -> dict[str, Any]:
        """``POST /knn_classify``: a label per query from its labelled neighbours' similarity-weighted votes."""
        index = self.open(name)
        if not 1 <= k <= 1000:
            raise BadRequest("k must be between 1 and 1000")
        if not temperature > 0:
            raise BadRequest("temperature must be positive")
        flt = self._filter(where, exists=(label_field,))
        vectors = await self.vectors(index=index, what="knn_classify", **source)
        self.check_space(index, vectors)
        hits = await asyncio.to_thread(index.search, vectors.values, k, flt)
        results: list[dict[str, Any]] = []
        for row in hits:
            if not row:
                results.append({"label": None, "score": 0.0, "votes": {}, "neighbors": []})
                continue
            scores = np.array([h.score for h in row], dtype=np.float64)
            weights = np.exp((scores - scores.max()) / temperature)  # DINO's k-NN weighting
            votes: dict[str, float] = {}
            labels = [_path_value(h.metadata, label_field) for h in row]
            for label, weight in zip(labels, weights, strict=True):
                votes[str(label)] = votes.get(str(label), 0.0) + float(weight)
            total = sum(votes.values())
            votes = {label: v / total for label, v in sorted(votes.items(), key=lambda kv: -kv[1])}
            best = next(iter(votes))
            results.append({"label": next(lab for lab in labels if str(lab) == best), "score": votes[best],
                            "votes": votes, "neighbors": [{"id": h.id, "score": h.score, "label": lab}
                                                          for h, lab in zip(row, labels, strict=True)]})
        return {"index": name, "label_field": label_field, "k": k, "results": results}

    def stats(self, name: str | None) -> dict[str, Any]:
        """``GET /index/stats``: every index (or one) with its binding and size."""
        names = [name] if name else self.store.names()
        return {"indexes": [self.open(n).stats() for n in names]}


def _path_value(metadata: dict[str, Any], dotted: str) -> Any:
    value: Any = metadata
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
