"""The PyTorch side of the registry: model ↔ safetensors files.

Kept apart from :mod:`zoo.registry` so that reading the registry and the onnxruntime backend never
import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from zoo.clip import ClipModel
from zoo.config import EncoderConfig
from zoo.encoders import ImageEncoder
from zoo.errors import ConfigError
from zoo.tokenizer import load_tokenizer


class Saveable(Protocol):
    """What :func:`zoo.save` needs of a model."""

    config: EncoderConfig

    def tensor_files(self) -> dict[str, dict[str, Tensor]]: ...


def model_files(model: Saveable) -> dict[str, bytes]:
    """Serialise a model's weights (and tokenizer) to file contents."""
    files = {name: save(tensors, metadata={"format": "pt"}) for name, tensors in model.tensor_files().items()}
    extra = getattr(model, "extra_files", None)
    if callable(extra):
        files.update(extra())
    return files


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"{path} is not a readable safetensors file: {exc}") from exc


def load_torch(folder: Path, config: EncoderConfig, **_: Any) -> nn.Module:
    """Rebuild the model a config describes and load its files strictly; returns it in eval mode."""
    model: ImageEncoder | ClipModel
    if config.text is not None:
        tokenizer_path = folder / config.text.tokenizer_file
        if not tokenizer_path.is_file():
            raise ConfigError(f"{tokenizer_path} is missing: a CLIP entry needs its tokenizer")
        model = ClipModel(config, load_tokenizer(str(tokenizer_path)))
    else:
        model = ImageEncoder(config)
    expected = model.tensor_files()
    files = {}
    for name in expected:
        if not (folder / name).is_file():
            raise ConfigError(f"{folder / name} is missing")
        files[name] = _read_safetensors(folder / name)
    model.load_tensor_files(files)
    return model.eval()
