"""Losses, one per file, registered by name in :data:`LOSSES` (``LOSSES.get("ntxent")(temperature=0.5)``).

Every loss validates its arguments in ``__init__`` so a bad recipe fails before training starts. The
registry lives here and this package imports every loss module below, so all of them are registered
whichever loss a caller imports first.
"""

from __future__ import annotations

from torch import nn

from zoo.naming import NameRegistry

LOSSES: NameRegistry[type[nn.Module]] = NameRegistry("loss")


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
    "LOSSES",
    "ClipLoss",
    "DINOLoss",
    "IJEPALoss",
    "MAELoss",
    "MoCoV3Loss",
    "NTXentLoss",
    "NegativeCosineLoss",
    "check_temperature",
]
