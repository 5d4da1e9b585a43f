"""The PyTorch side of the registry: model ↔ safetensors files.

Kept apart from :mod:`zoo.registry` so that reading the registry and the onnxruntime backend never
import torch. Shipped entries may store weights in a compact form (``config.storage``: fp16
tensors, cast back to fp32 here) and reference package weights instead of copying them
(``config.external_weights``, filled in by :mod:`zoo.package_weights`); either way the model is
rebuilt in fp32 and loaded strictly. What it returns meets :mod:`zoo.backend`'s contract.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor

from zoo.backend import ClipBackend, ImageBackend
from zoo.clip import ClipModel
from zoo.config import EncoderConfig
from zoo.encoders import ImageEncoder
from zoo.errors import BackendOptionError, ConfigError
from zoo.package_weights import fill
from zoo.tokenizer import load_tokenizer

if TYPE_CHECKING:  # mypy checks here that the torch classes keep the backend contract
    _IMAGE: type[ImageBackend] = ImageEncoder
    _CLIP: type[ClipBackend] = ClipModel


class Saveable(Protocol):
    """What :func:`zoo.save` needs of a model."""

    config: EncoderConfig

    def tensor_files(self) -> dict[str, dict[str, Tensor]]: ...


def weights_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file whose bytes depend only on its tensors and metadata.

    safetensors writes ``__metadata__`` in the order of a Rust hash map seeded per process, so the same
    weights saved twice could differ in their header and so in their sha256 and embedding-space id. The
    metadata is rewritten here in sorted key order; it is the same length, so nothing else moves.
    """
    raw = bytearray(save(dict(tensors), metadata=dict(metadata)))
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    written = json.dumps(header.get("__metadata__"), separators=(",", ":"), ensure_ascii=False).encode()
    canonical = json.dumps(dict(sorted(metadata.items())), separators=(",", ":"), ensure_ascii=False).encode()
    start = raw.find(b'"__metadata__":' + written, 8, 8 + size)
    if metadata and (len(written) != len(canonical) or start < 0):
        raise ConfigError("safetensors wrote its metadata in a form this writer does not recognise")
    if metadata:
        offset = start + len(b'"__metadata__":')
        raw[offset : offset + len(canonical)] = canonical
    return bytes(raw)


def model_files(model: Saveable) -> dict[str, bytes]:
    """Serialise a model's weights (and tokenizer) to file contents."""
    files = {name: weights_bytes(tensors, {"format": "pt"}) for name, tensors in model.tensor_files().items()}
    extra = getattr(model, "extra_files", None)
    if callable(extra):
        files.update(extra())
    return files


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"{path} is not a readable safetensors file: {exc}") from exc


def refuse_options(options: Mapping[str, Any]) -> None:
    """The torch backend takes no options: name what was passed rather than silently ignore it.

    Raises:
        BackendOptionError: Any option; ``precision`` says that int8 needs the onnx backend.
    """
    if not options:
        return
    given = ", ".join(f"{name}={value!r}" for name, value in sorted(options.items()))
    hint = ("; it computes in fp32 and has no precision option: int8 needs the onnx backend "
            "(zoo.load(ref, backend=\"onnx\", precision=\"int8\"))" if "precision" in options else "")
    raise BackendOptionError(f"the torch backend takes no options, got {given}{hint}")


def load_torch(folder: Path, config: EncoderConfig, **options: Any) -> ImageEncoder | ClipModel:
    """Rebuild the model a config describes and load its files strictly; returns it in eval mode.

    Raises:
        BackendOptionError: Any option (they belong to the onnx backend).
        ConfigError: A missing or unreadable file.
    """
    refuse_options(options)
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
    if config.external_weights:
        fill(files, config.external_weights)
    if config.storage is not None:
        files = {name: widen(tensors) for name, tensors in files.items()}
    model.load_tensor_files(files)
    if config.external_weights or config.storage is not None:
        # The model now holds plain fp32 tensors: saving it again writes them all, so its config must
        # no longer claim compact storage or references.
        model.config = config.replace(storage=None, external_weights=(), shipped=None)
    return model.eval()


def widen(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """fp16/bf16 storage back to fp32, the dtype every sslzoo model computes in; other tensors unchanged."""
    return {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in tensors.items()}
