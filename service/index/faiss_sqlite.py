"""The default index: SQLite holds every item durably, FAISS holds the vectors for search.

Durability. Each write (an upsert or delete of many ids) is one SQLite transaction in WAL mode with
``synchronous=FULL``: the vectors, ids and metadata are appended to SQLite's write-ahead log and
fsynced before the method returns, so an acknowledged add survives ``kill -9`` (and power loss).
SQLite is the single source of truth; there is no second store to keep consistent with it.

FAISS is derived state. Each write gets a sequence number (``seq``); every row carries the ``seq`` of
its last write, and every FAISS label that left the index is kept as a tombstone. A snapshot of the
FAISS index is written (tmp file, fsync, rename) every ``snapshot_every`` changes and on close, named
after the ``seq`` it covers. At start the newest snapshot is loaded and only rows written after it are
replayed, then tombstones are applied; without a usable snapshot the index is rebuilt from SQLite.

Labels. Each write of an id gets a fresh int64 FAISS label, so a replaced vector is a tombstoned old
label plus a new one. The exact index (``IndexFlatIP`` in ``IndexIDMap2``) removes tombstoned labels
at once; HNSW cannot remove, so its tombstoned labels are excluded from searches with an ID selector
and the graph is rebuilt from SQLite when they outnumber half the live items.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from service.index.base import Hit, IndexSpec, Item, MetadataFilter, UpsertResult
from service.index.filters import to_sql

log = logging.getLogger("sslzoo.service")
DB = "index.sqlite"
SQL_CHUNK = 900  # below SQLite's bound-parameter limit on every build
# An exact search of this many queries or more runs as one matrix product (BLAS), which streams the stored
# vectors once for all of them; fewer run one by one. FAISS 1.15 switches at 128,000 query numbers
# (queries x width), 500 queries at width 256, so the searches the index service merges never took the
# product and sixteen queries cost sixteen scans. Measured on 100k x 256, one thread: 1 query 5.6 ms one
# by one, 17 ms as a product; 4 queries 23 ms against 15 ms; 16 queries 99 ms against 24 ms.
BLAS_FROM_QUERIES = 4
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, label INTEGER UNIQUE NOT NULL, vector BLOB NOT NULL,
                                  metadata TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS items_seq ON items(seq);
CREATE TABLE IF NOT EXISTS tombstones (label INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
"""


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def connect(path: Path) -> sqlite3.Connection:
    """A connection whose commits are fsynced write-ahead-log appends."""
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


def initialise(folder: Path, spec: IndexSpec) -> None:
    """Write a new index's database with its spec (the caller renames the folder into place)."""
    db = connect(folder / DB)
    try:
        with db:
            db.execute("BEGIN")
            db.executemany("INSERT INTO meta VALUES (?, ?)",
                           [("spec", json.dumps(spec.to_dict())), ("seq", "0"), ("next_label", "0")])
    finally:
        db.close()


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), SQL_CHUNK):
        yield values[start : start + SQL_CHUNK]


class FaissSqliteIndex:
    """One named index in a folder: ``index.sqlite`` plus ``faiss-<seq>.index`` snapshots."""

    def __init__(self, folder: Path, snapshot_every: int = 10_000, threads: int | None = None) -> None:
        self.folder = folder
        self.snapshot_every = max(1, snapshot_every)
        self.threads = threads
        self._lock = threading.RLock()
        self._db = connect(folder / DB)
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        self.spec = IndexSpec.from_dict(json.loads(meta["spec"]))
        self._seq = int(meta["seq"])
        self._next_label = int(meta["next_label"])
        self._count = int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        self._dead: set[int] = set()
        self._changes_since_snapshot = 0
        self._index = self._load()

    # -- FAISS structure ---------------------------------------------------------------------------
    def _empty(self) -> faiss.Index:
        spec = self.spec
        inner: Any  # faiss's stubs type each structure apart
        if spec.kind == "hnsw":
            inner = faiss.IndexHNSWFlat(spec.dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = spec.ef_construction
        else:
            inner = faiss.IndexFlatIP(spec.dim)
        return faiss.IndexIDMap2(inner)

    def _snapshots(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.folder.glob("faiss-*.index"):
            stem = path.stem.removeprefix("faiss-")
            if stem.isdigit():
                found.append((int(stem), path))
        return sorted(found, reverse=True)

    def _load(self) -> faiss.Index:
        for seq, path in self._snapshots():
            if seq > self._seq:
                continue  # written after a commit that did not survive: not trustworthy
            try:
                index = faiss.read_index(str(path))
            except RuntimeError as exc:
                log.warning("index %s: snapshot %s unreadable (%s); trying older ones", self.spec.name, path, exc)
                continue
            if index.d != self.spec.dim:
                continue
            replayed = self._replay(index, after=seq)
            log.info("index %s: snapshot at seq %d + %d replayed rows (%d items)", self.spec.name, seq, replayed,
                     self._count)
            return index
        index = self._empty()
        self._replay(index, after=-1)
        self._db.execute("DELETE FROM tombstones")  # a fresh build holds no stale labels
        log.info("index %s: rebuilt from SQLite (%d items)", self.spec.name, self._count)
        return index

    def _replay(self, index: faiss.Index, after: int) -> int:
        """Add rows written after ``after``, then drop (or, for HNSW, mask) tombstoned labels."""
        replayed = 0
        cursor = self._db.execute("SELECT label, vector FROM items WHERE seq > ? ORDER BY seq", (after,))
        while rows := cursor.fetchmany(4096):
            labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            index.add_with_ids(vectors, labels)
            replayed += len(rows)
        dead = [r[0] for r in self._db.execute("SELECT label FROM tombstones")]
        if after >= 0 and dead:
            self._forget(index, dead)
        return replayed

    def _forget(self, index: faiss.Index, labels: Sequence[int]) -> None:
        if not labels:
            return
        if self.spec.kind == "hnsw":
            self._dead.update(labels)
        else:
            index.remove_ids(np.asarray(labels, dtype=np.int64))  # type: ignore[arg-type]

    def _after_write(self, changes: int) -> None:
        self._changes_since_snapshot += changes
        if self.spec.kind == "hnsw" and len(self._dead) > 100 + self._count // 2:
            self._rebuild()
        elif self._changes_since_snapshot >= self.snapshot_every:
            self.snapshot()

    def _rebuild(self) -> None:
        log.info("index %s: rebuilding HNSW without %d dead labels", self.spec.name, len(self._dead))
        index = self._empty()
        self._replay(index, after=-1)
        self._index, self._dead = index, set()
        self.snapshot()

    def snapshot(self) -> None:
        """Write the FAISS index durably as ``faiss-<seq>.index``, then prune what it makes redundant."""
        with self._lock:
            seq = self._seq
            target = self.folder / f"faiss-{seq}.index"
            tmp = self.folder / f".faiss-{seq}.tmp"
            faiss.write_index(self._index, str(tmp))
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, target)
            fsync_dir(self.folder)
            for old_seq, path in self._snapshots():
                if old_seq != seq:
                    path.unlink(missing_ok=True)
            if not self._dead:  # every tombstone up to seq is applied in the snapshot
                self._db.execute("DELETE FROM tombstones WHERE seq <= ?", (seq,))
            self._changes_since_snapshot = 0

    # -- writes ------------------------------------------------------------------------------------
    def _labels_of(self, ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(f"SELECT id, label FROM items WHERE id IN ({marks})", tuple(chunk)))
        return found

    def _commit(self, statements: list[tuple[str, list[tuple[Any, ...]]]], next_label: int) -> int:
        """Run statements as one durable transaction with the next ``seq``; returns it."""
        seq = self._seq + 1
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                db.executemany(sql, [tuple(seq if v is _SEQ else v for v in row) for row in rows])
            counters = [(str(seq), "seq"), (str(next_label), "next_label")]
            db.executemany("UPDATE meta SET value = ? WHERE key = ?", counters)
            db.execute("COMMIT")  # WAL append + fsync (synchronous=FULL): durable from here on
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._seq, self._next_label = seq, next_label
        return seq

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]]) -> UpsertResult:
        """Insert or replace items by id in one durable transaction."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.spec.dim) or len(metadata) != len(ids):
            raise ValueError(f"upsert needs {len(ids)} vectors of width {self.spec.dim} and as many metadata objects")
        if len(set(ids)) != len(ids):
            raise ValueError("ids repeat within one upsert")
        with self._lock:
            old = self._labels_of(ids)
            labels = np.arange(self._next_label, self._next_label + len(ids), dtype=np.int64)
            rows = [(item_id, int(label), vec.tobytes(), json.dumps(meta, separators=(",", ":")), _SEQ)
                    for item_id, label, vec, meta in zip(ids, labels, vectors, metadata, strict=True)]
            self._commit([("INSERT INTO tombstones VALUES (?, ?)", [(label, _SEQ) for label in old.values()]),
                          ("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?)", rows)],
                         self._next_label + len(ids))
            self._forget(self._index, list(old.values()))
            self._index.add_with_ids(vectors, labels)
            self._count += len(ids) - len(old)
            self._after_write(len(ids))
        return UpsertResult(added=len(ids) - len(old), replaced=len(old))

    def delete(self, ids: Sequence[str]) -> list[str]:
        """Remove items by id in one durable transaction; returns those that existed."""
        with self._lock:
            old = self._labels_of(ids)
            if not old:
                return []
            self._commit([("DELETE FROM items WHERE id = ?", [(item_id,) for item_id in old]),
                          ("INSERT INTO tombstones VALUES (?, ?)", [(label, _SEQ) for label in old.values()])],
                         self._next_label)
            self._forget(self._index, list(old.values()))
            self._count -= len(old)
            self._after_write(len(old))
        return [item_id for item_id in ids if item_id in old]

    # -- reads -------------------------------------------------------------------------------------
    def _allowed(self, where: MetadataFilter) -> np.ndarray:
        clause, params = to_sql(where)
        rows = self._db.execute(f"SELECT label FROM items WHERE {clause}", params).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def search(self, queries: np.ndarray, k: int, where: MetadataFilter | None = None) -> list[list[Hit]]:
        """The ``k`` highest inner products per query among items matching ``where``."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        with self._lock:
            selector: Any = None
            if where:
                allowed = self._allowed(where)
                if len(allowed) == 0:
                    return [[] for _ in range(len(queries))]
                selector = faiss.IDSelectorBatch(allowed)
                limit = len(allowed)
            else:
                limit = self._count
                if self._dead:
                    selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(self._dead, dtype=np.int64)))
            k = min(k, limit)
            if k <= 0:
                return [[] for _ in range(len(queries))]
            if self.threads:
                faiss.omp_set_num_threads(self.threads)  # OpenMP's setting is per calling thread
            # FAISS's switch is one process-wide number in units of queries x width, so it is set for this
            # index's width on each search (indexes of other widths searched at once can only cost speed).
            faiss.cvar.distance_compute_blas_threshold = BLAS_FROM_QUERIES * self.spec.dim
            if self.spec.kind == "hnsw":
                params = faiss.SearchParametersHNSW(  # type: ignore[attr-defined]
                    sel=selector, efSearch=max(self.spec.ef_search, k))
            else:
                params = faiss.SearchParameters(sel=selector) if selector is not None else None  # type: ignore[call-arg]
            scores, labels = self._index.search(queries, k, params=params)
            found = {int(label) for label in labels.ravel() if label >= 0}
            rows: dict[int, tuple[str, str]] = {}
            for chunk in _chunks(sorted(found)):
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT label, id, metadata FROM items WHERE label IN ({marks})"
                rows.update((r[0], (r[1], r[2])) for r in self._db.execute(sql, tuple(chunk)))
        return [[Hit(rows[int(label)][0], float(score), json.loads(rows[int(label)][1]))
                 for score, label in zip(score_row, label_row, strict=True) if int(label) in rows]
                for score_row, label_row in zip(scores, labels, strict=True)]

    def get(self, ids: Sequence[str], with_vectors: bool = False) -> list[Item | None]:
        """Stored items by id (``None`` where unknown)."""
        found: dict[str, Item] = {}
        with self._lock:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                for item_id, vector, meta in self._db.execute(
                        f"SELECT id, vector, metadata FROM items WHERE id IN ({marks})", tuple(chunk)):
                    vec = np.frombuffer(vector, dtype=np.float32).copy() if with_vectors else None
                    found[item_id] = Item(item_id, json.loads(meta), vec)
        return [found.get(item_id) for item_id in ids]

    def count(self) -> int:
        """Live items."""
        return self._count

    def stats(self) -> dict[str, Any]:
        """Spec, count, sequence number and structure details."""
        with self._lock:
            return {**self.spec.to_dict(), "count": self._count, "seq": self._seq, "faiss_total": self._index.ntotal,
                    "dead_labels": len(self._dead), "store": "faiss+sqlite"}

    def close(self) -> None:
        """Snapshot if anything changed since the last one, then close SQLite."""
        with self._lock:
            if self._changes_since_snapshot:
                self.snapshot()
            self._db.close()


class _SeqMarker:
    """Placeholder in row tuples for the transaction's sequence number (known only at commit)."""


_SEQ = _SeqMarker()
