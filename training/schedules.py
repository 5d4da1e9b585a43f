"""Step-indexed schedules: cosine with linear warm-up, as in SimCLR, BYOL, DINO and MAE.

A schedule is a pure function of the optimiser step, so resuming needs nothing but the step: there is
no scheduler object whose hidden state could drift from the checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from zoo.errors import ConfigError


@dataclass(frozen=True)
class CosineSchedule:
    """Linear warm-up from ``start`` to ``base`` over ``warmup_steps``, then cosine from ``base`` to ``end``.

    Attributes:
        base: Value at the end of warm-up (the peak learning rate, the initial weight decay).
        end: Value at the last step.
        total_steps: Number of optimiser steps of the whole run.
        warmup_steps: Steps of linear warm-up; 0 starts the cosine at once.
        start: Value at step 0 of the warm-up.
    """

    base: float
    end: float
    total_steps: int
    warmup_steps: int = 0
    start: float = 0.0

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ConfigError(f"a schedule needs at least one step, got total_steps={self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ConfigError(f"warmup_steps={self.warmup_steps} must lie in [0, total_steps={self.total_steps}]")

    def __call__(self, step: int) -> float:
        """The value for optimiser step ``step`` (0-based); steps past the end keep the final value."""
        if step < self.warmup_steps:
            return self.start + (self.base - self.start) * step / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps <= 1:
            return self.base if decay_steps == 1 else self.end
        progress = min(1.0, (step - self.warmup_steps) / (decay_steps - 1))
        return self.end + 0.5 * (self.base - self.end) * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(total_steps: int, warmup_steps: int | None, warmup_fraction: float) -> int:
    """Warm-up length: explicit steps if given, else a fraction of the run (clipped to the run)."""
    steps = warmup_steps if warmup_steps is not None else round(warmup_fraction * total_steps)
    return max(0, min(int(steps), total_steps))
