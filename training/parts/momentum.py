"""Momentum (EMA) teachers: the update, its schedules, and freezing the teacher.

BYOL (Grill et al. 2020, §3.1) updates the target as ``ξ ← τξ + (1 − τ)θ`` with
``τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2``; MoCo v3 and DINO use the same cosine increase towards 1;
I-JEPA increases it linearly.
"""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def update_momentum(model: nn.Module, model_ema: nn.Module, m: float) -> None:
    """``ema ← m · ema + (1 − m) · online`` for every parameter, in place.

    Buffers (BatchNorm running statistics) are not averaged: the teacher runs in train mode and keeps
    its own, as in BYOL and MoCo v3.

    Args:
        model: The online (student) network.
        model_ema: Its momentum twin, same architecture.
        m: Momentum in ``[0, 1]``; 1 leaves the teacher unchanged.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {m}")
    online: list[torch.Tensor] = list(model.parameters())
    ema: list[torch.Tensor] = list(model_ema.parameters())
    if len(online) != len(ema):
        raise ValueError(f"models differ: {len(online)} parameters vs {len(ema)}")
    torch._foreach_mul_(ema, m)
    torch._foreach_add_(ema, [p.detach() for p in online], alpha=1.0 - m)


def cosine_schedule(step: int, max_steps: int, start_value: float, end_value: float) -> float:
    """Cosine from ``start_value`` at step 0 to ``end_value`` at ``max_steps`` (BYOL §3.1's τ schedule)."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    progress = min(step, max_steps) / max_steps
    return end_value - (end_value - start_value) * (math.cos(math.pi * progress) + 1.0) / 2.0


def linear_schedule(step: int, max_steps: int, start_value: float, end_value: float) -> float:
    """Linear from ``start_value`` to ``end_value``, constant after ``max_steps`` (I-JEPA's EMA, DINO's τ_t)."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    progress = min(max(step, 0), max_steps) / max_steps
    return start_value + (end_value - start_value) * progress


def deactivate_requires_grad(module: nn.Module) -> nn.Module:
    """Freeze a teacher: no parameter asks for a gradient, so none is ever computed or stepped."""
    for param in module.parameters():
        param.requires_grad = False
    return module
