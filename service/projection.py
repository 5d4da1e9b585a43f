"""``POST /index/projection``: a 2-D map of an index for people to look at, cached per index version.

PCA (default) is a linear map, so a query lands exactly where the fitted projection puts it. t-SNE
(scikit-learn, on request) has no map for new points: a query is placed at its nearest projected
neighbour's position, and the answer says so (``placement: "nearest-neighbour"``).

A projection is computed in a worker thread and kept in a small LRU cache keyed by the index's identity
and *version* (its write sequence number and count), so every page view of an unchanged index is a
lookup, and any add or delete makes the next request recompute. Indexes larger than ``max_points`` are
projected on a seeded sample (the same sample while the version stands).

Points carry their metadata minus ``data:`` URIs (thumbnails), which would make the answer megabytes;
the page fetches one thumbnail on hover with ``POST /index/get``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import BadRequest
from service.index import VectorIndex
from service.indexing import Indexer

METHODS = ("pca", "tsne")
MAX_POINTS = {"pca": 20_000, "tsne": 3_000}  # t-SNE is O(N log N) with a large constant: ~30 s at 3k on 2 cores
DEFAULT_POINTS = 2_000
CACHE_SIZE = 8
GET_CHUNK = 1_000


@dataclass(frozen=True)
class Projection:
    """A fitted 2-D projection of (a sample of) one index version.

    Attributes:
        method: ``pca`` or ``tsne``.
        ids: Projected item ids, in row order.
        xy: ``[N, 2]`` positions.
        metadata: Each item's metadata without ``data:`` URIs.
        total: Items in the index at this version (``N`` is smaller when sampled).
        mean: PCA centre (``None`` for t-SNE).
        components: PCA axes ``[2, D]`` (``None`` for t-SNE).
        explained: PCA explained-variance ratio of both axes.
        vectors: The projected vectors (t-SNE only: nearest-neighbour placement of queries).
        seconds: Time the fit took.
    """

    method: str
    ids: list[str]
    xy: np.ndarray
    metadata: list[dict[str, Any]]
    total: int
    mean: np.ndarray | None = None
    components: np.ndarray | None = None
    explained: tuple[float, float] | None = None
    vectors: np.ndarray | None = None
    seconds: float = 0.0


def strip_data_uris(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata without ``data:`` strings (thumbnails), top level and nested."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, str) and value[:5].lower() == "data:":
            continue
        out[key] = strip_data_uris(value) if isinstance(value, dict) else value
    return out


def list_ids(index: VectorIndex) -> list[str]:
    """Every id in an index, sorted.

    The storage interface has no listing yet, so a store may offer ``ids()``; for the FAISS + SQLite
    store the ids are read from its database through a separate read-only connection (WAL lets it read
    beside the writer without blocking it).
    """
    lister = getattr(index, "ids", None)
    if callable(lister):
        return sorted(lister())
    folder = getattr(index, "folder", None)
    if folder is None:
        raise BadRequest(f"index {index.spec.name!r} is held by a store that cannot list its items")
    db = sqlite3.connect(f"file:{folder / 'index.sqlite'}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT id FROM items ORDER BY id")]
    finally:
        db.close()


def version_of(index: VectorIndex) -> dict[str, Any]:
    """What identifies an index's contents: its space, write sequence number and count, and its folder.

    A dropped and re-created index starts its sequence numbers again, so ``seq`` and ``count`` alone
    could repeat with other items; the folder's inode and change time tell the two apart (a new folder
    may reuse a freed inode, never also its change time).
    """
    stats = index.stats()
    folder = getattr(index, "folder", None)
    identity = None
    if folder is not None and os.path.isdir(folder):
        info = os.stat(folder)
        identity = (info.st_ino, info.st_ctime_ns)
    return {"embedding_space": index.spec.embedding_space, "seq": stats.get("seq"), "count": index.count(),
            "store_id": identity}


def fit_pca(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """``(xy, mean, components [2, D], explained ratio)`` by a centred SVD (deterministic signs)."""
    x = vectors.astype(np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = np.zeros((2, x.shape[1]))
    components[: min(2, len(vt))] = vt[:2]
    for row in components:  # make each axis's largest loading positive, so reruns draw the same picture
        if row.any() and row[np.argmax(np.abs(row))] < 0:
            row *= -1
    var = singular**2
    ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
    explained = (float(ratio[0]) if len(ratio) > 0 else 0.0, float(ratio[1]) if len(ratio) > 1 else 0.0)
    return centred @ components.T, mean, components, explained


def fit_tsne(vectors: np.ndarray, metric: str, perplexity: float | None, seed: int) -> np.ndarray:
    """t-SNE positions (scikit-learn, PCA initialisation, a perplexity that fits small indexes)."""
    from sklearn.manifold import TSNE

    n = len(vectors)
    if n < 4:
        raise BadRequest(f"t-SNE needs at least 4 items; this index has {n} (use method 'pca')")
    chosen = perplexity if perplexity is not None else min(30.0, (n - 1) / 3.0)
    if not 1.0 <= chosen < n:
        raise BadRequest(f"perplexity must be between 1 and the number of points ({n}), got {chosen}")
    tsne = TSNE(n_components=2, perplexity=chosen, init="pca", random_state=seed,
                metric="cosine" if metric == "cosine" else "euclidean")
    return np.asarray(tsne.fit_transform(vectors.astype(np.float32)), dtype=np.float64)


class Projector:
    """Fits and caches projections of indexes, and places queries on them."""

    def __init__(self, indexer: Indexer, cache_size: int = CACHE_SIZE) -> None:
        self.indexer = indexer
        self.cache_size = cache_size
        self._cache: OrderedDict[Hashable, Projection] = OrderedDict()
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self.fits = 0  # how many projections were computed (the tests count cache misses with it)

    def _sample(self, index: VectorIndex, max_points: int, seed: int) -> tuple[list[str], np.ndarray, list[dict]]:
        ids = list_ids(index)
        if len(ids) > max_points:
            keep = np.sort(np.random.default_rng(seed).choice(len(ids), size=max_points, replace=False))
            ids = [ids[i] for i in keep]
        rows, metas = [], []
        for start in range(0, len(ids), GET_CHUNK):
            for item in index.get(ids[start : start + GET_CHUNK], with_vectors=True):
                if item is None or item.vector is None:  # deleted between the listing and now
                    continue
                rows.append((item.id, item.vector))
                metas.append(strip_data_uris(item.metadata))
        if not rows:
            return [], np.zeros((0, index.spec.dim), dtype=np.float32), []
        return [r[0] for r in rows], np.stack([r[1] for r in rows]).astype(np.float32), metas

    def _fit(self, index: VectorIndex, method: str, max_points: int, perplexity: float | None, seed: int
             ) -> Projection:
        start = time.perf_counter()
        total = index.count()
        ids, vectors, metas = self._sample(index, max_points, seed)
        if len(ids) < 2:
            raise BadRequest(f"index {index.spec.name!r} holds {len(ids)} item(s); a projection needs at least 2")
        self.fits += 1
        if method == "pca":
            xy, mean, components, explained = fit_pca(vectors)
            return Projection("pca", ids, xy, metas, total, mean, components, explained,
                              seconds=time.perf_counter() - start)
        xy = fit_tsne(vectors, index.spec.metric, perplexity, seed)
        return Projection("tsne", ids, xy, metas, total, vectors=vectors, seconds=time.perf_counter() - start)

    async def projection(self, name: str, method: str, max_points: int, perplexity: float | None, seed: int
                         ) -> tuple[Projection, dict[str, Any], bool]:
        """The cached or freshly fitted projection of an index: ``(projection, version, cached)``."""
        if method not in METHODS:
            raise BadRequest(f"method must be one of {METHODS}, got {method!r}")
        if not 2 <= max_points <= MAX_POINTS[method]:
            raise BadRequest(f"max_points for {method} must be between 2 and {MAX_POINTS[method]}")
        index = self.indexer.open(name)
        version = version_of(index)
        key = (name, *version.values(), method, max_points, perplexity if method == "tsne" else None, seed)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found, version, True
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:  # two page views of a new version fit it once: the second waits, then finds it
                found = self._cache.get(key)
                if found is not None:
                    return found, version, True
                fitted = await asyncio.to_thread(self._fit, index, method, max_points, perplexity, seed)
                self._cache[key] = fitted
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        finally:
            if not lock.locked():
                self._locks.pop(key, None)
        return fitted, version, False

    async def place(self, projection: Projection, index: VectorIndex, **source: Any) -> dict[str, Any]:
        """A query's position: projected by PCA, or at its nearest projected neighbour for t-SNE."""
        vectors = await self.indexer.vectors(index=index, what="index/projection", **source)
        self.indexer.check_space(index, vectors)
        query = vectors.values[:1].astype(np.float64)
        if projection.components is not None and projection.mean is not None:
            x, y = ((query - projection.mean) @ projection.components.T)[0]
            return {"x": round(float(x), 6), "y": round(float(y), 6), "placement": "projected", "model": vectors.model}
        assert projection.vectors is not None
        scores = projection.vectors.astype(np.float64) @ query[0]
        best = int(np.argmax(scores))
        x, y = projection.xy[best]
        return {"x": round(float(x), 6), "y": round(float(y), 6), "placement": "nearest-neighbour",
                "nearest_id": projection.ids[best],
                "score": float(scores[best]), "model": vectors.model}

    async def project(self, name: str, method: str = "pca", max_points: int = DEFAULT_POINTS,
                      perplexity: float | None = None, seed: int = 0, **source: Any) -> dict[str, Any]:
        """``POST /index/projection``: the points, and the query's position when one is given."""
        projection, version, cached = await self.projection(name, method, max_points, perplexity, seed)
        query = None
        if any(source.get(k) is not None for k in ("images", "texts", "vectors")):
            query = await self.place(projection, self.indexer.open(name), **source)
        return {"index": name, "method": projection.method, "cached": cached,
                "version": {"seq": version["seq"], "count": version["count"]},
                "total": projection.total, "sampled": len(projection.ids) < projection.total,
                "seconds": round(projection.seconds, 4),
                "explained_variance": list(projection.explained) if projection.explained else None,
                "points": {"ids": projection.ids, "x": [round(float(v), 6) for v in projection.xy[:, 0]],
                           "y": [round(float(v), 6) for v in projection.xy[:, 1]], "metadata": projection.metadata},
                "query": query}
