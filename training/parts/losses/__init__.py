"""Losses, one per file, found by name through a small registry (``get_loss("ntxent", temperature=0.5)``).

Every loss validates its arguments in ``__init__`` so a bad recipe fails before training starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from zoo.errors import UnknownNameError

_LOSSES: dict[str, Callable[..., nn.Module]] = {}


def register_loss(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Register a loss class under ``name``."""

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        _LOSSES[name] = cls
        return cls

    return wrap


def list_losses() -> list[str]:
    """Names of every registered loss."""
    return sorted(_LOSSES)


def get_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name``; an unknown name lists the known ones."""
    try:
        factory = _LOSSES[name]
    except KeyError:
        raise UnknownNameError(f"unknown loss {name!r}; losses: {', '.join(list_losses())}") from None
    return factory(**kwargs)


def check_temperature(name: str, value: float, low: float = 1e-3) -> float:
    """A temperature below ``low`` makes logits overflow in bf16/fp16 and gradients explode."""
    if not isinstance(value, int | float) or value < low:
        raise ValueError(f"{name} must be a number >= {low}, got {value!r}")
    return float(value)


from training.parts.losses.clip import ClipLoss  # noqa: E402
from training.parts.losses.dino import DINOLoss  # noqa: E402
from training.parts.losses.ijepa import IJEPALoss  # noqa: E402
from training.parts.losses.mae import MAELoss  # noqa: E402
from training.parts.losses.mocov3 import MoCoV3Loss  # noqa: E402
from training.parts.losses.negative_cosine import NegativeCosineLoss  # noqa: E402
from training.parts.losses.ntxent import NTXentLoss  # noqa: E402

__all__ = [
    "ClipLoss",
    "DINOLoss",
    "IJEPALoss",
    "MAELoss",
    "MoCoV3Loss",
    "NTXentLoss",
    "NegativeCosineLoss",
    "check_temperature",
    "get_loss",
    "list_losses",
    "register_loss",
]
