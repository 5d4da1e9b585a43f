"""Adaptive batching of model calls across concurrent requests, one worker thread per model tower.

Requests are decoded and preprocessed in parallel (in the server's thread pool); only the model call
is batched. While the model is busy, new requests queue up; when it is free, the worker takes every
queued request up to ``max_batch_size`` items and runs them as one call, so batches grow with load
and a lone request waits for nobody (``max_wait_ms=0``). A positive ``max_wait_ms`` lets the worker
linger for more requests first: the trade Infinity and BentoML's dispatcher make, measured in
``benchmarks/service_load.py``.

This sits in the runtime rather than behind ``@bentoml.api(batchable=True)`` because BentoML's
batchable endpoints take exactly one argument, so a request could name neither its model nor its
options, and the batch would be decoded serially inside one call.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger("sslzoo.service")

#: A batch function: the payloads of several requests (each a list or array of items) → one array
#: whose rows follow the concatenated items.
BatchFn = Callable[[list[Any]], np.ndarray]


@dataclass
class _Job:
    payload: Any
    size: int
    future: Future[np.ndarray] = field(default_factory=Future)


@dataclass
class BatchStats:
    """Counters for ``/models`` and the benchmark: how large batches actually were."""

    calls: int = 0
    items: int = 0
    largest: int = 0

    def as_dict(self) -> dict[str, float]:
        """Counts and the mean batch size."""
        return {"calls": self.calls, "items": self.items, "largest": self.largest,
                "mean_batch": round(self.items / self.calls, 2) if self.calls else 0.0}


class Batcher:
    """Merges concurrent submissions into model calls of at most ``max_batch_size`` items."""

    def __init__(self, fn: BatchFn, *, name: str, max_batch_size: int = 64, max_wait_ms: float = 0.0,
                 thread_init: Callable[[], None] | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.fn = fn
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.stats = BatchStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._held: _Job | None = None
        self._thread_init = thread_init
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    async def submit(self, payload: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Queue one request's items and wait (without blocking the event loop) for their rows."""
        job = _Job(payload, len(payload))
        self._queue.put(job)
        return await asyncio.wrap_future(job.future)

    def run_now(self, payload: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Blocking submit, for warm-up and for callers outside the event loop."""
        job = _Job(payload, len(payload))
        self._queue.put(job)
        return job.future.result()

    def close(self) -> None:
        """Stop the worker after the jobs already queued."""
        self._queue.put(None)

    def _collect(self, first: _Job) -> list[_Job]:
        jobs, total = [first], first.size
        deadline = time.monotonic() + self.max_wait
        while total < self.max_batch_size:
            timeout = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # keep the stop signal for the main loop
                break
            if total + job.size > self.max_batch_size:
                self._held = job  # starts the next batch, so no request is split or reordered
                break
            jobs.append(job)
            total += job.size
        return jobs

    def _run(self) -> None:
        if self._thread_init is not None:
            self._thread_init()  # per-thread runtime state, e.g. the size of torch's OpenMP team
        while True:
            first = self._held or self._queue.get()
            self._held = None
            if first is None:
                return
            # A request whose client went away is dropped here; the others can no longer be cancelled.
            jobs = [job for job in self._collect(first) if job.future.set_running_or_notify_cancel()]
            if not jobs:
                continue
            try:
                out = self.fn([job.payload for job in jobs])
            except BaseException as exc:  # handed to every waiting request
                log.exception("batch of %d request(s) failed in %s", len(jobs), self.name)
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            total = sum(job.size for job in jobs)
            self.stats.calls += 1
            self.stats.items += total
            self.stats.largest = max(self.stats.largest, total)
            start = 0
            for job in jobs:
                # Read-only views: nothing downstream may normalise a shared batch in place.
                rows = out[start : start + job.size]
                rows.flags.writeable = False
                job.future.set_result(rows)
                start += job.size
