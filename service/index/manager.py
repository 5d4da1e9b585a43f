"""Named indexes under the data directory, each in its own folder, created and dropped atomically.

Layout::

    <data_dir>/indexes/<name>/index.sqlite        items, metadata, tombstones, spec (the durable truth)
    <data_dir>/indexes/<name>/faiss-<seq>.index   the newest FAISS snapshot
    <data_dir>/indexes/.tmp-*                     an index being created (never listed)
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from pathlib import Path

from service.index.base import NAME_RE, IndexSpec
from service.index.faiss_sqlite import FaissSqliteIndex, fsync_dir, initialise

log = logging.getLogger("sslzoo.service")


class LocalIndexStore:
    """FAISS + SQLite indexes in folders under ``root``; implements :class:`~service.index.base.IndexStore`."""

    def __init__(self, root: Path, snapshot_every: int = 10_000, threads: int | None = None) -> None:
        self.root = root
        self.threads = threads
        self.root.mkdir(parents=True, exist_ok=True)
        self.snapshot_every = snapshot_every
        self._open: dict[str, FaissSqliteIndex] = {}
        self._lock = threading.Lock()
        for stale in self.root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)

    def names(self) -> list[str]:
        """Every index on disk."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_RE.match(p.name))

    def open(self, name: str) -> FaissSqliteIndex | None:
        """The index called ``name`` (opened on first use), or ``None``."""
        if not NAME_RE.match(name):
            raise ValueError(f"invalid index name {name!r}: use letters, digits, '.', '_', '-' (max 64)")
        with self._lock:
            if name in self._open:
                return self._open[name]
            folder = self.root / name
            if not (folder / "index.sqlite").is_file():
                return None
            index = FaissSqliteIndex(folder, self.snapshot_every, self.threads)
            self._open[name] = index
            return index

    def create(self, spec: IndexSpec) -> FaissSqliteIndex:
        """A new empty index; a crash part-way leaves only a hidden folder that the next start removes."""
        with self._lock:
            folder = self.root / spec.name
            if folder.exists():
                raise FileExistsError(f"index {spec.name!r} exists")
            tmp = self.root / f".tmp-{uuid.uuid4().hex}"
            tmp.mkdir()
            try:
                initialise(tmp, spec)
                fsync_dir(tmp)
                os.rename(tmp, folder)
                fsync_dir(self.root)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            index = FaissSqliteIndex(folder, self.snapshot_every, self.threads)
            self._open[spec.name] = index
        log.info("created index %s (%s, %d-d, space %s)", spec.name, spec.kind, spec.dim, spec.embedding_space[:12])
        return index

    def drop(self, name: str) -> bool:
        """Delete an index: renamed away atomically, then removed."""
        with self._lock:
            index = self._open.pop(name, None)
            folder = self.root / name
            if not folder.is_dir():
                return False
            if index is not None:
                index.close()
            trash = self.root / f".tmp-dropped-{uuid.uuid4().hex}"
            os.rename(folder, trash)
            fsync_dir(self.root)
        shutil.rmtree(trash, ignore_errors=True)
        log.info("dropped index %s", name)
        return True

    def close(self) -> None:
        """Snapshot and close every open index."""
        with self._lock:
            for index in self._open.values():
                index.close()
            self._open.clear()
