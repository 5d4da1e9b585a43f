"""The index service: the one process that owns the indexes (FAISS + SQLite) and the label sets.

The entry service (:mod:`service.service`) scales by workers and holds no state; it reaches this
service through ``bentoml.depends``, which runs it as its own process beside the entry's workers
(``bentoml serve``) or as its own deployment (BentoCloud, Kubernetes), so each scales on its own. Its
APIs are internal: they take what the entry prepared (a parsed or embedded query as a plain dict with
its NumPy array: BentoML pickles them over a local socket but turns dataclasses into dicts on the way)
and answer ``{"ok": value}``, or ``{"error": {status, kind, message}}`` for any error a client caused,
which the entry raises again as the same JSON 4xx answer (:mod:`service.index_gateway`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, ParamSpec

import bentoml

from service.errors import classify_exception
from service.labelsets import LabelSet
from service.settings import Settings

log = logging.getLogger("sslzoo.service")
P = ParamSpec("P")
#: What every index service API answers: ``{"ok": value}`` or ``{"error": {status, kind, message}}``.
Envelope = dict[str, Any]


def answered(func: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Envelope]]:
    """The value in an envelope, and an exception as its status, kind and message.

    An exception would reach the entry as BentoML's generic 500; an answer keeps what the client
    should see. ``functools.wraps`` keeps the signature BentoML reads.
    """

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Envelope:
        try:
            return {"ok": await func(*args, **kwargs)}
        except Exception as exc:  # every failure must reach the client as its own answer
            status, kind, message = classify_exception(exc)
            if status >= 500:
                log.error("index service call failed: %s", message, exc_info=exc)
            return {"error": {"status": status, "kind": kind, "message": message}}

    return wrapper


# The entry's client to this service rotates its connection pool every ``runner_connection`` requests
# or seconds (BentoML's defaults: 100, 300 s) and closes the old pool with requests still in flight on
# it, which fail as "Server disconnected" (seen under 16 concurrent searches). One local process has
# nothing to rebalance, so the pool lives as long as the entry.
ONE_POOL = {"max_requests": 2**31 - 1, "max_age": 10.0**9}
# Every public request is logged and measured once, by the entry; this service's own access log and
# metrics would only repeat them, at about a third of its CPU per search (measured on 2 cores).
QUIET = {"logging": {"access": {"enabled": False}}, "metrics": {"enabled": False}}


@bentoml.service(workers=1, traffic={"timeout": 120}, runner_connection=ONE_POOL, **QUIET)
class IndexService:
    """The indexes and label sets of one data directory, in one process."""

    def __init__(self) -> None:
        from service.index import LocalIndexStore
        from service.indexing import Indexer, query_from_wire
        from service.labelsets import LabelSetStore
        from service.projection import Projector

        logging.getLogger("sslzoo").setLevel(logging.INFO)
        settings = Settings.from_env()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = LocalIndexStore(settings.data_dir / "indexes", settings.snapshot_every, settings.intra_op_threads)
        self.indexer = Indexer(store, None, settings)
        self.projector = Projector(self.indexer)
        self.label_set_store = LabelSetStore(settings.data_dir / "label_sets.json")
        self.query = query_from_wire
        log.info("sslzoo index service: data %s, indexes %s", settings.data_dir, ", ".join(store.names()) or "none")

    @bentoml.on_shutdown
    def close(self) -> None:
        """Snapshot the indexes and stop the search batchers."""
        self.indexer.close()

    # -- indexes -----------------------------------------------------------------------------------
    @bentoml.api
    @answered
    async def spec(self, index: str) -> Any:
        """An index's spec (``IndexSpec.to_dict``), or ``None`` when it does not exist."""
        spec = self.indexer.spec(index)
        return None if spec is None else spec.to_dict()

    @bentoml.api
    @answered
    async def add(self, index: str, ids: Any, metadata: Any, kind: Any, query: Any) -> Any:
        """Upsert prepared vectors by id."""
        return await self.indexer.add(index, ids, metadata, kind, self.query(query))

    @bentoml.api
    @answered
    async def delete(self, index: str, ids: Any) -> Any:
        """Delete items by id."""
        return await self.indexer.delete(index, ids)

    @bentoml.api
    @answered
    async def drop(self, index: str) -> Any:
        """Delete a whole index."""
        return await self.indexer.drop(index)

    @bentoml.api
    @answered
    async def get(self, index: str, ids: Any, include_vectors: bool) -> Any:
        """Stored items by id."""
        return await self.indexer.get(index, ids, include_vectors)

    @bentoml.api
    async def search(self, index: str, searches: Any) -> Any:
        """Several requests' searches of one index (merged by the entry), each answered in its own envelope.

        They run concurrently, so the unfiltered ones then run as one FAISS call.
        """
        return await asyncio.gather(*(self._search(index, **one) for one in searches))

    @answered
    async def _search(self, index: str, k: Any, filter: Any, query: Any) -> Any:
        return await self.indexer.search(index, k, filter, self.query(query))

    @bentoml.api
    @answered
    async def knn_classify(self, index: str, k: Any, label_field: Any, temperature: Any, filter: Any,
                           query: Any) -> Any:
        """Labels by a similarity-weighted vote of labelled neighbours."""
        return await self.indexer.knn_classify(index, k, label_field, temperature, filter, self.query(query))

    @bentoml.api
    @answered
    async def projection(self, index: str, method: Any, max_points: Any, perplexity: Any, seed: Any,
                         query: Any) -> Any:
        """A 2-D map of an index, with the prepared query's position when there is one."""
        return await self.projector.project(index, method, max_points, perplexity, seed,
                                            vectors=None if query is None else self.query(query))

    @bentoml.api
    @answered
    async def stats(self, index: str | None = None) -> Any:
        """Every index (or one) with its binding and size."""
        return self.indexer.stats(index)

    # -- label sets --------------------------------------------------------------------------------
    @bentoml.api
    @answered
    async def label_set(self, name: str) -> Any:
        """A label set (``dataclasses.asdict`` of a :class:`~service.labelsets.LabelSet`), or ``None``."""
        found = self.label_set_store.get(name)
        return None if found is None else asdict(found)

    @bentoml.api
    @answered
    async def label_sets(self) -> Any:
        """Every label set, by name."""
        return [asdict(found) for found in self.label_set_store.all()]

    @bentoml.api
    @answered
    async def put_label_set(self, name: str, labels: list[str], templates: list[str]) -> Any:
        """Add or replace a label set, durably."""
        self.label_set_store.put(LabelSet(name, tuple(labels), tuple(templates)))
        return None
