"""The contract every ``zoo.load`` backend meets, so callers never probe what a model can do.

The torch backend (:mod:`zoo.torch_backend`) and the onnxruntime backend (``export.runtime``) return
objects of different classes; a service or evaluation written against :class:`ImageBackend` and
:class:`ClipBackend` runs on either, and mypy checks that both keep to it. Torch-free on purpose: the
onnxruntime side imports it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from zoo.config import EncoderConfig

#: CLIP's learnable temperature is stored as a log and clamped here (the CLIP paper's 100), in training
#: and at inference alike, so a scale read back from the weights gives the logits training saw.
LOGIT_SCALE_MAX = math.log(100.0)


def clamped_scale(logit_scale: float) -> float:
    """``exp(logit_scale)`` with the log clamped at :data:`LOGIT_SCALE_MAX`, as a plain number."""
    return math.exp(min(float(logit_scale), LOGIT_SCALE_MAX))


@runtime_checkable
class ImageBackend(Protocol):
    """An image tower as a loaded backend serves it: numpy in, float32 ``[N, D]`` vectors out.

    ``embed_array`` is the model core alone (pixels already standardised), so a caller can run the CPU
    preprocessing elsewhere and batch the core; ``embed_images`` and ``embed_uint8`` do both steps with
    the config's preprocessing.
    """

    config: EncoderConfig

    @property
    def embed_dim(self) -> int:
        """Width of the vectors."""
        ...

    def embed_array(self, pixels: np.ndarray, batch_size: int = ...) -> np.ndarray:
        """Preprocessed float32 ``[N, C, H, W]`` → ``[N, D]``."""
        ...

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = ...) -> np.ndarray:
        """PIL images → ``[N, D]`` with the model's own preprocessing."""
        ...

    def embed_uint8(self, images: np.ndarray, batch_size: int = ...) -> np.ndarray:
        """A dataset's uint8 ``[N, H, W, C]`` batch → ``[N, D]``."""
        ...


@runtime_checkable
class ClipBackend(ImageBackend, Protocol):
    """An image tower plus a text tower in the same space, and the scale of their similarity logits."""

    def embed_texts(self, texts: Sequence[str], batch_size: int = ...) -> np.ndarray:
        """Strings → ``[N, D]`` in the image tower's space."""
        ...

    def similarity_scale(self) -> float:
        """What zero-shot logits multiply cosine similarities by: ``exp(logit_scale)`` clamped at 100."""
        ...
