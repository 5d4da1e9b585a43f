"""Adaptive batching of model calls across concurrent requests, one worker thread per model tower.

Requests are decoded and preprocessed in parallel (in the server's thread pool); only the model call
is batched. While the model is busy, new requests queue up; when it is free, the worker takes every
queued request up to ``max_batch_size`` items and runs them as one call, so batches grow with load
and a lone request waits for nobody (``max_wait_ms=0``). A positive ``max_wait_ms`` lets the worker
linger for more requests first: the trade Infinity and BentoML's dispatcher make, measured in
``benchmarks/service_load.py``.

A merged batch is then cut into *micro-batches* of ``micro_batch`` items, the size the runtime found
fastest per item at warm-up: on a CPU a large batch is often slower per item than a small one (the
activations leave the caches), so merging many requests must not mean one huge model call.

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
from collections.abc import Callable, Sequence, Sized
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

log = logging.getLogger("sslzoo.service")
R = TypeVar("R", bound=Sequence[Any] | np.ndarray)

#: A batch function: the payloads of several requests (each a list or array of items) → one result
#: (an array, or a list) whose rows follow the concatenated items.
BatchFn = Callable[[list[Any]], R]


@dataclass
class _Job(Generic[R]):
    payload: Any
    size: int
    future: Future[R] = field(default_factory=Future)


@dataclass
class BatchStats:
    """Counters for ``/models`` and the benchmark: how large batches actually were."""

    calls: int = 0
    items: int = 0
    largest: int = 0
    micro_batch: int | None = None
    model_calls: int = 0

    def as_dict(self) -> dict[str, float | None]:
        """Counts, the mean merged batch, and the micro-batch size model calls are cut to."""
        return {"calls": self.calls, "items": self.items, "largest": self.largest,
                "mean_batch": round(self.items / self.calls, 2) if self.calls else 0.0,
                "micro_batch": self.micro_batch, "model_calls": self.model_calls}


class Batcher(Generic[R]):
    """Merges concurrent submissions into batches of at most ``max_batch_size`` items.

    Each merged batch runs as model calls of at most ``micro_batch`` items (one call while it is ``None``).
    """

    def __init__(self, fn: BatchFn[R], *, name: str, max_batch_size: int = 64, max_wait_ms: float = 0.0,
                 thread_init: Callable[[], None] | None = None, micro_batch: int | None = None) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self.fn = fn
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.stats = BatchStats()
        self.micro_batch = micro_batch
        self._queue: queue.Queue[_Job[R] | None] = queue.Queue()
        self._held: _Job[R] | None = None
        self._thread_init = thread_init
        self._thread = threading.Thread(target=self._run, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    @property
    def micro_batch(self) -> int | None:
        """Most items in one model call (``None``: a merged batch runs as one call)."""
        return self.stats.micro_batch

    @micro_batch.setter
    def micro_batch(self, size: int | None) -> None:
        if size is not None and size < 1:
            raise ValueError(f"micro_batch must be at least 1, got {size}")
        self.stats.micro_batch = size

    async def submit(self, payload: Sized) -> R:
        """Queue one request's items and wait (without blocking the event loop) for their rows."""
        job: _Job[R] = _Job(payload, len(payload))
        self._queue.put(job)
        return await asyncio.wrap_future(job.future)

    def run_now(self, payload: Sized) -> R:
        """Blocking submit, for warm-up and for callers outside the event loop."""
        job: _Job[R] = _Job(payload, len(payload))
        self._queue.put(job)
        return job.future.result()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker after the jobs already queued, and wait for it.

        The worker is a daemon thread inside native model code most of the time; left running at interpreter
        exit, it is torn down under torch's or onnxruntime's feet ("terminate called without an active
        exception", exit 134).
        """
        self._queue.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _collect(self, first: _Job[R]) -> list[_Job[R]]:
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
                out = self._call([job.payload for job in jobs])
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
                rows = out[start : start + job.size]
                if isinstance(rows, np.ndarray):  # read-only views: nobody may normalise a shared batch in place
                    rows.flags.writeable = False
                job.future.set_result(rows)  # type: ignore[arg-type]  # a slice of R is an R
                start += job.size

    def _call(self, payloads: list[Any]) -> R:
        """The merged batch as model calls of at most ``micro_batch`` items; their rows joined once."""
        groups = micro_batches(payloads, self.micro_batch)
        self.stats.model_calls += len(groups)
        if len(groups) == 1:
            return self.fn(groups[0])
        outs = [self.fn(group) for group in groups]
        if isinstance(outs[0], np.ndarray):
            return np.concatenate(outs)  # type: ignore[return-value]  # arrays in, an array out
        return [row for out in outs for row in out]  # type: ignore[return-value]  # lists in, a list out


def micro_batches(payloads: list[Any], size: int | None) -> list[list[Any]]:
    """``payloads`` regrouped so that each group holds at most ``size`` items, in order.

    A payload larger than the room left in a group is sliced (a view for arrays), so a 32-item request
    becomes, say, four calls of 8, and eight 1-item requests one call of 8.
    """
    if size is None or sum(len(p) for p in payloads) <= size:
        return [payloads]
    groups: list[list[Any]] = [[]]
    room = size
    for payload in payloads:
        start = 0
        while start < len(payload):
            if room == 0:
                groups.append([])
                room = size
            piece = payload[start : start + room]
            groups[-1].append(piece)
            start += len(piece)
            room -= len(piece)
    return groups
