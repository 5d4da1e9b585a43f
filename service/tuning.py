"""Which micro-batch size a loaded tower runs fastest per item, measured once at warm-up.

On a CPU the best batch is a property of the model, the backend and the machine together: a
ResNet at 28 px gains from batches of 64, an EfficientNet at 224 px loses half its speed from
batch 1 to 32 (its activations leave the caches). So the runtime times a few sizes, doubling, on the
loaded tower itself and cuts merged requests into the fastest (see :mod:`service.batching`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("sslzoo.service")
#: A size within this fraction of the best rate counts as the best: the smaller batch answers sooner.
TOLERANCE = 0.97
#: Stop doubling once a size is this much slower per item than the best so far.
GIVE_UP = 0.75


@dataclass(frozen=True)
class BatchChoice:
    """The chosen micro-batch size and the items/s measured at each size tried."""

    size: int
    rates: dict[int, float]

    def describe(self) -> str:
        """``8 (1: 30.1/s, 2: 33.0/s, ...)`` for the log."""
        rates = ", ".join(f"{size}: {rate:.1f}/s" for size, rate in self.rates.items())
        return f"{self.size} ({rates})"


def candidate_sizes(largest: int) -> list[int]:
    """1, 2, 4, ... up to ``largest`` (which is included)."""
    sizes = [1]
    while sizes[-1] * 2 <= largest:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != largest:
        sizes.append(largest)
    return sizes


def fastest_batch(run: Callable[[int], object], largest: int, budget_s: float = 8.0, repeats: int = 3,
                  per_size_s: float = 0.5) -> BatchChoice:
    """Time ``run(size)`` (one model call of ``size`` items) over doubling sizes; the fastest per item.

    Each size runs once untimed (a new shape's first call allocates) and then up to ``repeats``
    times (fewer once ``per_size_s`` is spent), keeping the quickest, which is the least disturbed by
    other work on a shared machine. Larger sizes are skipped once one is clearly slower than the best
    or the budget is spent.
    """
    rates: dict[int, float] = {}
    start = time.perf_counter()
    for size in candidate_sizes(largest):
        run(size)
        times = [_timed(run, size)]
        while len(times) < repeats and sum(times) < per_size_s:
            times.append(_timed(run, size))
        rates[size] = size / max(min(times), 1e-9)
        best = max(rates.values())
        if rates[size] < GIVE_UP * best or time.perf_counter() - start > budget_s:
            break
    best = max(rates.values())
    chosen = min(size for size, rate in rates.items() if rate >= TOLERANCE * best)
    return BatchChoice(chosen, rates)


def _timed(run: Callable[[int], object], size: int) -> float:
    begin = time.perf_counter()
    run(size)
    return time.perf_counter() - begin
