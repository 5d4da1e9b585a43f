"""Index operations on the store: add, delete, drop, get, search, k-NN classification and stats.

This is the index service's half of every index endpoint (:mod:`service.index_service` runs it in the
one process that owns the store); the entry service embeds images and texts, parses raw vectors and
hands over a :data:`Query` (:mod:`service.index_gateway`). Every index is bound at creation to one
embedding space, dimension and metric; vectors from another space are refused (409) and vectors of
another width are a 400. Store calls block on fsync, so they run in worker threads; searches without
a filter that arrive together run as one FAISS call (:class:`~service.index.batched.SearchBatchers`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from service.errors import BadRequest, Conflict, NotFound
from service.index import IndexSpec, IndexStore, MetadataFilter, VectorIndex, parse_filter
from service.index.base import KINDS, NAME_RE
from service.index.batched import SearchBatchers
from service.settings import Settings
from service.validation import check_count, check_ids, check_metadata, fit_vectors, one_source, parse_vectors

if TYPE_CHECKING:
    from service.embedding import Embedder
    from zoo.registry import Registry


@dataclass(frozen=True)
class Vectors:
    """Vectors with the space they live in and where they came from."""

    values: np.ndarray
    space: str
    metric: str
    model: str | None


@dataclass(frozen=True)
class RawVectors:
    """Vectors a client sent, parsed but not yet fitted to an index (only the index knows its spec).

    ``metric`` is the metric of the registry entry whose space ``embedding_space`` names, when one
    does: the metric a new index takes.
    """

    values: np.ndarray
    embedding_space: str | None
    metric: str | None = None


#: What the entry service hands over for a query or an add: embedded, or raw from the client.
Query = Vectors | RawVectors


def query_to_wire(query: Query) -> dict[str, Any]:
    """A query as a dict of plain values and its array (what crosses to the index service intact)."""
    if isinstance(query, Vectors):
        return {"values": query.values, "space": query.space, "metric": query.metric, "model": query.model}
    return {"values": query.values, "embedding_space": query.embedding_space, "metric": query.metric}


def query_from_wire(wire: dict[str, Any]) -> Query:
    """The query :func:`query_to_wire` sent."""
    if "space" in wire:
        return Vectors(wire["values"], wire["space"], wire["metric"], wire["model"])
    return RawVectors(wire["values"], wire["embedding_space"], wire["metric"])


def fit_query(index: VectorIndex | None, query: Query) -> Vectors:
    """Raw vectors checked against the index's space and width; embedded ones as they are.

    Raw vectors are unit-normalised for a cosine space (a copy: the input may be read-only).
    """
    if isinstance(query, Vectors):
        return query
    raw, space = query.values, query.embedding_space
    if index is not None:
        spec = index.spec
        if space is not None and space != spec.embedding_space:
            raise Conflict(f"index {spec.name!r} holds space {spec.embedding_space}; these vectors are from {space}")
        return Vectors(fit_vectors(raw, spec.dim, spec.metric), spec.embedding_space, spec.metric, None)
    if not space:
        raise BadRequest("raw vectors need 'embedding_space' (the id /embed returns) so the index can "
                         "refuse vectors of another model")
    metric = query.metric or "cosine"
    return Vectors(fit_vectors(raw, raw.shape[1], metric), space, metric, None)


async def embed_query(embedder: Embedder, source: str, items: Sequence[str], model: str | None,
                      embedding_space: str | None) -> Vectors:
    """Images or texts embedded with ``model``, refused when the request names another space."""
    if source == "images":
        loaded, values = await embedder.images(model, items)
    else:
        loaded, values = await embedder.texts(model, items)
    if embedding_space is not None and embedding_space != loaded.embedding_space:
        raise Conflict(f"'embedding_space' {embedding_space} does not match model {loaded.ref} "
                       f"({loaded.embedding_space})")
    return Vectors(values, loaded.embedding_space, loaded.config.metric, loaded.ref)


def space_metric(registry: Registry, space: str) -> str | None:
    """The metric of a registry entry with this space (``None`` when no entry has it)."""
    for entry in registry.entries():
        try:
            if entry.embedding_space == space:
                return entry.read_config().metric
        except Exception:  # a broken entry elsewhere must not fail this request
            continue
    return None


class Indexer:
    """The index operations over an :class:`~service.index.base.IndexStore`.

    The index service holds one without an embedder; given one, the same class also serves a
    request's images and texts in-process.
    """

    def __init__(self, store: IndexStore, embedder: Embedder | None, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.searches = SearchBatchers(settings.batch_max_size * 4)

    # -- helpers -----------------------------------------------------------------------------------
    def open(self, name: str) -> VectorIndex:
        """An existing index, or a 404 that lists the known ones."""
        index = self.store.open(self._name(name))
        if index is None:
            known = ", ".join(self.store.names()) or "none yet"
            raise NotFound(f"no index named {name!r} (known: {known}); POST /index/add creates one")
        return index

    def spec(self, name: str) -> IndexSpec | None:
        """An index's binding, or ``None`` when there is no such index (yet)."""
        index = self.store.open(self._name(name))
        return None if index is None else index.spec

    @staticmethod
    def _name(name: str) -> str:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise BadRequest(f"invalid index name {name!r}: letters, digits, '.', '_', '-' (max 64)")
        return name

    def _space_metric(self, space: str) -> str | None:
        """The metric of a registry entry with this space (``None`` when no entry has it)."""
        return None if self.embedder is None else space_metric(self.embedder.runtime.registry, space)

    async def vectors(self, *, index: VectorIndex | None, what: str, images: Sequence[str] | None = None,
                      texts: Sequence[str] | None = None, vectors: Query | Sequence[Sequence[float]] | None = None,
                      model: str | None = None, embedding_space: str | None = None) -> Vectors:
        """A query's vectors fitted to an index (existing, or about to be created from them).

        ``vectors`` is either a :data:`Query` the entry service prepared, or the request's own fields
        (raw vectors as lists; images and texts only where this process holds an embedder).
        """
        if isinstance(vectors, Vectors | RawVectors):
            return fit_query(index, vectors)
        source, items = one_source({"images": images, "texts": texts, "vectors": vectors}, what)
        if source == "vectors":
            check_count(items, "vectors", self.settings.max_items)
            metric = self._space_metric(embedding_space) if index is None and embedding_space else None
            return fit_query(index, RawVectors(parse_vectors(items), embedding_space, metric))  # type: ignore[arg-type]
        if self.embedder is None:
            raise BadRequest(f"{what}: images and texts are embedded by the entry service, not here")
        if model is None and index is not None:
            model = index.spec.model
        return await embed_query(self.embedder, source, items, model, embedding_space)

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
                  query: Query | None) -> dict[str, Any]:
        """``POST /index/add``: upsert by id; the first add creates the index, bound to its space."""
        if kind is not None and kind not in KINDS:
            raise BadRequest(f"'kind' must be one of {KINDS}")
        index = self.store.open(self._name(name))
        if index is not None and kind is not None and kind != index.spec.kind:
            raise Conflict(f"index {name!r} is {index.spec.kind}, not {kind}; drop it to change its kind")
        vectors = await self.vectors(index=index, what="index/add", vectors=query)
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
        self.searches.forget(name)
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

    async def _nearest(self, index: VectorIndex, values: np.ndarray, k: int, flt: MetadataFilter
                       ) -> list[list[Any]]:
        if flt:
            return await asyncio.to_thread(index.search, values, k, flt)
        return await self.searches.search(index, values, k)

    async def search(self, name: str, k: int, where: dict[str, Any] | None, query: Query | None
                     ) -> dict[str, Any]:
        """``POST /search``: the k nearest items per query, optionally among those matching a filter."""
        index = self.open(name)
        if not 1 <= k <= 1000:
            raise BadRequest("k must be between 1 and 1000")
        flt = self._filter(where)
        vectors = await self.vectors(index=index, what="search", vectors=query)
        self.check_space(index, vectors)
        hits = await self._nearest(index, vectors.values, k, flt)
        return {"index": name, "embedding_space": index.spec.embedding_space, "metric": index.spec.metric,
                "results": [[{"id": h.id, "score": h.score, "metadata": h.metadata} for h in row] for row in hits]}

    async def knn_classify(self, name: str, k: int, label_field: str, temperature: float,
                           where: dict[str, Any] | None, query: Query | None) -> dict[str, Any]:
        """``POST /knn_classify``: a label per query from its labelled neighbours' similarity-weighted votes."""
        index = self.open(name)
        if not 1 <= k <= 1000:
            raise BadRequest("k must be between 1 and 1000")
        if not temperature > 0:
            raise BadRequest("temperature must be positive")
        flt = self._filter(where, exists=(label_field,))
        vectors = await self.vectors(index=index, what="knn_classify", vectors=query)
        self.check_space(index, vectors)
        hits = await self._nearest(index, vectors.values, k, flt)
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

    def close(self) -> None:
        """Stop the search batchers, then snapshot and close the store."""
        self.searches.close()
        self.store.close()


def _path_value(metadata: dict[str, Any], dotted: str) -> Any:
    value: Any = metadata
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value
