"""Concurrent searches of one index merged into one store call.

A flat FAISS search of one query streams every stored vector through memory; sixteen queries at once
stream them once (a matrix product, from :data:`~service.index.faiss_sqlite.BLAS_FROM_QUERIES` queries
on), about four times the queries per second on 100k × 256 with one thread. So the
index service queues unfiltered searches per index and runs whatever is waiting together, with the
runtime's :class:`~service.batching.Batcher`: a lone query waits for nobody. Filtered searches keep
their own call, since each filter selects other rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from service.batching import Batcher
from service.index.base import Hit, VectorIndex


@dataclass(frozen=True)
class _Queries:
    """One request's query rows and how many neighbours it wants."""

    values: np.ndarray
    k: int

    def __len__(self) -> int:
        return len(self.values)


def _search_together(index: VectorIndex, payloads: list[_Queries]) -> list[list[Hit]]:
    """Every request's rows in one search for the largest ``k``; each row cut back to its own ``k``."""
    values = payloads[0].values if len(payloads) == 1 else np.concatenate([p.values for p in payloads])
    rows = index.search(values, max(p.k for p in payloads))
    out: list[list[Hit]] = []
    start = 0
    for payload in payloads:
        out.extend(row[: payload.k] for row in rows[start : start + len(payload)])
        start += len(payload)
    return out


class SearchBatchers:
    """One search :class:`~service.batching.Batcher` per open index, made on its first search."""

    def __init__(self, max_queries: int) -> None:
        self.max_queries = max_queries
        self._batchers: dict[str, tuple[VectorIndex, Batcher[list[list[Hit]]]]] = {}
        self._lock = threading.Lock()

    async def search(self, index: VectorIndex, values: np.ndarray, k: int) -> list[list[Hit]]:
        """The ``k`` nearest items per row of ``values``, searched together with concurrent requests."""
        return list(await self._batcher(index).submit(_Queries(values, k)))  # type: ignore[arg-type]

    def _batcher(self, index: VectorIndex) -> Batcher[list[list[Hit]]]:
        name = index.spec.name
        with self._lock:
            found = self._batchers.get(name)
            if found is not None and found[0] is index:
                return found[1]
            if found is not None:  # the index was dropped and made again: a new store object
                found[1].close()
            batcher: Batcher[list[list[Hit]]] = Batcher(
                lambda payloads: _search_together(index, payloads), name=f"search-{name}",
                max_batch_size=self.max_queries)
            self._batchers[name] = (index, batcher)
            return batcher

    def forget(self, name: str) -> None:
        """Stop an index's batcher (it is being dropped)."""
        with self._lock:
            found = self._batchers.pop(name, None)
        if found is not None:
            found[1].close()

    def close(self) -> None:
        """Stop every batcher."""
        with self._lock:
            batchers = [batcher for _, batcher in self._batchers.values()]
            self._batchers.clear()
        for batcher in batchers:
            batcher.close()
