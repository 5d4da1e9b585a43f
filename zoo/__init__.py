"""sslzoo's foundation: encoders, configs, the model registry, datasets and the CLI.

Importing ``zoo`` does not import torch; the torch classes load on first use, so the onnxruntime
path stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo.api import alias, delete, info, list_models, load, locate, save, save_files
from zoo.config import EncoderConfig, PreprocessConfig, TextConfig
from zoo.errors import (
    ConfigError,
    DataError,
    DatasetNotAvailableError,
    ManifestError,
    MissingExtraError,
    RefError,
    SslzooError,
    UnknownNameError,
    UnsafeWeightsError,
)
from zoo.registry import Entry, Registry, sslzoo_home

if TYPE_CHECKING:
    from zoo.clip import ClipModel, build_clip
    from zoo.encoders import ImageEncoder, build_encoder
    from zoo.text import TextEncoder

list = list_models

_LAZY = {
    "ImageEncoder": "zoo.encoders", "build_encoder": "zoo.encoders",
    "ClipModel": "zoo.clip", "build_clip": "zoo.clip", "TextEncoder": "zoo.text",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        from zoo.extras import needs_extra

        with needs_extra(f"zoo.{name}"):
            return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")


__all__ = [
    "ClipModel", "ConfigError", "DataError", "DatasetNotAvailableError", "EncoderConfig", "Entry",
    "ImageEncoder", "ManifestError", "MissingExtraError", "PreprocessConfig", "RefError", "Registry", "SslzooError",
    "TextConfig", "TextEncoder", "UnknownNameError", "UnsafeWeightsError", "alias", "build_clip", "build_encoder",
    "delete", "info", "list", "list_models", "load", "locate", "save", "save_files", "sslzoo_home",
]
