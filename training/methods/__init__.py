"""One file per method, each assembled from the shared parts and registered by name in :data:`METHODS`.

``@METHODS.register("dino")`` makes ``--method dino`` and ``method: dino`` in a recipe work, and
``METHODS.get("dino")`` returns the class (or factory) to build with ``(encoder, **method_args)``.
The registry lives here, beside the methods, and this package imports every method module below, so
whoever asks for a method finds all of them, and a method module that fails to import fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zoo.naming import NameRegistry

MethodFactory = Callable[..., Any]
METHODS: NameRegistry[MethodFactory] = NameRegistry("method")

from training.methods import byol, clip, dino, ijepa, mae, mocov3, simclr, simsiam  # noqa: E402, F401

__all__ = ["METHODS", "MethodFactory"]
