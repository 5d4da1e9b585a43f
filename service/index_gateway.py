"""The entry service's half of the index endpoints and label sets: prepare here, store there.

Images and texts are embedded here (in the entry's workers, which scale); raw vectors are parsed
here; the prepared :data:`~service.indexing.Query` goes to :class:`~service.index_service.IndexService`,
the one process that owns the store, in one call per request (concurrent searches of one index in one
call between them: :mod:`service.merged_calls`). An error it answers is raised again
here with the same status, kind and message, so a client sees the same JSON error as when everything
ran in one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.embedding import Embedder
from service.errors import ServiceError
from service.index_service import Envelope, IndexService
from service.indexing import Query, RawVectors, embed_query, query_to_wire, space_metric
from service.labelsets import LabelSet
from service.merged_calls import MergedCalls
from service.settings import Settings
from service.validation import check_count, one_source, parse_vectors


class RemoteError(ServiceError):
    """An error the index service answered, with its status and kind."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


def unwrap(envelope: Envelope) -> Any:
    """The index service's answer, or its error raised as a :class:`RemoteError`."""
    if "error" in envelope:
        raise RemoteError(**envelope["error"])
    return envelope["ok"]


def _label_set(raw: dict[str, Any]) -> LabelSet:
    return LabelSet(raw["name"], tuple(raw["labels"]), tuple(raw["templates"]))


class RemoteLabelSets:
    """Label sets kept by the index service, for :class:`~service.embedding.Embedder`."""

    def __init__(self, remote: IndexService) -> None:
        self.remote = remote

    async def get(self, name: str) -> LabelSet | None:
        """A label set, or ``None``."""
        found = unwrap(await self.remote.label_set(name=name))
        return None if found is None else _label_set(found)

    async def all(self) -> list[LabelSet]:
        """Every label set, by name."""
        return [_label_set(raw) for raw in unwrap(await self.remote.label_sets())]

    async def put(self, label_set: LabelSet) -> None:
        """Add or replace a label set, durably."""
        unwrap(await self.remote.put_label_set(name=label_set.name, labels=list(label_set.labels),
                                               templates=list(label_set.templates)))


class IndexGateway:
    """The index endpoints as the entry service serves them."""

    def __init__(self, remote: IndexService, embedder: Embedder, settings: Settings) -> None:
        self.remote = remote
        self.embedder = embedder
        self.settings = settings
        self.searches = MergedCalls(self._search_many)

    async def _search_many(self, index: str, searches: list[dict[str, Any]]) -> list[Any]:
        return await self.remote.search(index=index, searches=searches)  # type: ignore[no-any-return]

    async def _spec(self, index: str) -> dict[str, Any] | None:
        return unwrap(await self.remote.spec(index=index))  # type: ignore[no-any-return]

    async def query(self, index: str, what: str, *, images: Sequence[str] | None, texts: Sequence[str] | None,
                    vectors: Sequence[Sequence[float]] | None, model: str | None, embedding_space: str | None,
                    creating: bool = False) -> Query:
        """A request's images or texts embedded, or its raw vectors parsed, for the index service.

        Embedding without a named model uses the model that created the index, which costs one more
        call; so does an add of raw vectors (a new index takes the metric of their space's entry).
        """
        source, items = one_source({"images": images, "texts": texts, "vectors": vectors}, what)
        if source == "vectors":
            check_count(items, "vectors", self.settings.max_items)
            raw = parse_vectors(items)  # type: ignore[arg-type]
            metric = None
            if creating and embedding_space and await self._spec(index) is None:
                metric = space_metric(self.embedder.runtime.registry, embedding_space)
            return RawVectors(raw, embedding_space, metric)
        if model is None:
            spec = await self._spec(index)
            model = spec["model"] if spec is not None else None
        return await embed_query(self.embedder, source, items, model, embedding_space)  # type: ignore[arg-type]

    async def add(self, index: str, ids: list[str], metadata: list[dict[str, Any]] | None, kind: str | None,
                  **source: Any) -> dict[str, Any]:
        """``POST /index/add``."""
        query = await self.query(index, "index/add", creating=True, **source)
        return unwrap(await self.remote.add(index=index, ids=ids, metadata=metadata, kind=kind,  # type: ignore[no-any-return]
                                            query=query_to_wire(query)))

    async def delete(self, index: str, ids: list[str]) -> dict[str, Any]:
        """``POST /index/delete``."""
        return unwrap(await self.remote.delete(index=index, ids=ids))  # type: ignore[no-any-return]

    async def drop(self, index: str) -> dict[str, Any]:
        """``POST /index/drop``."""
        return unwrap(await self.remote.drop(index=index))  # type: ignore[no-any-return]

    async def get(self, index: str, ids: list[str], include_vectors: bool) -> dict[str, Any]:
        """``POST /index/get``."""
        return unwrap(await self.remote.get(index=index, ids=ids,  # type: ignore[no-any-return]
                                            include_vectors=include_vectors))

    async def search(self, index: str, k: int, where: dict[str, Any] | None, **source: Any) -> dict[str, Any]:
        """``POST /search``."""
        query = query_to_wire(await self.query(index, "search", **source))
        return unwrap(await self.searches.call(index, {"k": k, "filter": where, "query": query}))  # type: ignore[no-any-return]

    async def knn_classify(self, index: str, k: int, label_field: str, temperature: float,
                           where: dict[str, Any] | None, **source: Any) -> dict[str, Any]:
        """``POST /knn_classify``."""
        query = query_to_wire(await self.query(index, "knn_classify", **source))
        return unwrap(await self.remote.knn_classify(  # type: ignore[no-any-return]
            index=index, k=k, label_field=label_field, temperature=temperature, filter=where, query=query))

    async def project(self, index: str, method: str, max_points: int, perplexity: float | None, seed: int,
                      **source: Any) -> dict[str, Any]:
        """``POST /index/projection``: the query (when given) prepared here, the map made there."""
        query = None
        if any(source.get(k) is not None for k in ("images", "texts", "vectors")):
            query = query_to_wire(await self.query(index, "index/projection", **source))
        return unwrap(await self.remote.projection(  # type: ignore[no-any-return]
            index=index, method=method, max_points=max_points, perplexity=perplexity, seed=seed, query=query))

    async def stats(self, index: str | None) -> dict[str, Any]:
        """``GET /index/stats``."""
        return unwrap(await self.remote.stats(index=index))  # type: ignore[no-any-return]
