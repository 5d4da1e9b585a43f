"""The onnxruntime backend: what ``zoo.load(ref, backend="onnx")`` returns. Imports no torch.

:class:`OnnxImageEncoder` and :class:`OnnxClipModel` meet the backend contract of :mod:`zoo.backend`
as the torch classes do, share preprocessing with them through :mod:`zoo.preprocess` and tokenisation
through :mod:`zoo.tokenizer`, so both backends see identical inputs and a service can swap one for the
other. Pooling and normalisation are inside the graph.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
from PIL import Image
from safetensors import safe_open

from export.errors import NotExportedError, RuntimeOptionError
from zoo.backend import ClipBackend, ImageBackend, clamped_scale
from zoo.config import EncoderConfig, PreprocessConfig
from zoo.preprocess import preprocess_batch, preprocess_uint8
from zoo.tokenizer import encode_texts, load_tokenizer

log = logging.getLogger(__name__)

IMAGE_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
TEXT_FILES = {"fp32": "text.onnx", "int8": "text.int8.onnx"}
PRECISIONS = tuple(IMAGE_FILES)
_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
IMAGE_BATCH, TEXT_BATCH = 64, 256


@dataclass(frozen=True)
class SessionSettings:
    """onnxruntime session options that matter on a CPU.

    Attributes:
        intra_op_threads: Threads one operator may use; 0 lets onnxruntime use one per physical core.
            Set it to the cores you give this process when several workers share a machine.
        inter_op_threads: Threads running independent operators in parallel; these graphs are chains.
        optimization: Graph optimisation level: ``all`` fuses layouts and, for int8, QDQ pairs into
            integer kernels; lower levels are for debugging.
        spin: Let idle threads spin between operators (lower latency, higher CPU use when idle).
    """

    intra_op_threads: int = 0
    inter_op_threads: int = 1
    optimization: str = "all"
    spin: bool = True

    def __post_init__(self) -> None:
        if self.optimization not in _LEVELS:
            raise RuntimeOptionError(f"optimization must be one of {sorted(_LEVELS)}, got {self.optimization!r}")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise RuntimeOptionError("thread counts must be >= 0 (0 means onnxruntime's default)")

    def session(self, path: Path) -> ort.InferenceSession:
        """An ``InferenceSession`` on the CPU execution provider with these settings."""
        options = ort.SessionOptions()
        options.graph_optimization_level = _LEVELS[self.optimization]
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxImageEncoder:
    """An exported image tower: preprocessed pixels or PIL images in, contract-applied vectors out."""

    def __init__(self, path: Path, config: EncoderConfig, settings: SessionSettings | None = None,
                 precision: str = "fp32") -> None:
        self.config = config
        self.precision = precision
        self.settings = settings or SessionSettings()
        self.session = self.settings.session(path)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    @property
    def embed_dim(self) -> int:
        """Width of the vectors returned."""
        return self.config.embed_dim

    @property
    def preprocess_config(self) -> PreprocessConfig:
        """The preprocessing the weights were trained with."""
        return self.config.preprocess

    def embed_array(self, pixels: np.ndarray, batch_size: int = IMAGE_BATCH) -> np.ndarray:
        """Preprocessed float32 ``[N, C, H, W]`` → float32 ``[N, D]``, in batches."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        chunks = [self.session.run([self.output_name], {self.input_name: pixels[i : i + batch_size]})[0]
                  for i in range(0, len(pixels), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.embed_dim), np.float32)

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = IMAGE_BATCH) -> np.ndarray:
        """PIL images → float32 ``[N, D]`` with the model's own preprocessing."""
        chunks = [self.embed_array(preprocess_batch(images[i : i + batch_size], self.config.preprocess))
                  for i in range(0, len(images), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.embed_dim), np.float32)

    def embed_uint8(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """A dataset's uint8 ``[N, H, W, C]`` array → float32 ``[N, D]``."""
        chunks = [self.embed_array(preprocess_uint8(images[i : i + batch_size], self.config.preprocess))
                  for i in range(0, len(images), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.embed_dim), np.float32)


class OnnxClipModel:
    """An exported CLIP pair: the image tower plus ``text.onnx`` and the entry's tokenizer."""

    def __init__(self, visual: OnnxImageEncoder, text_path: Path, tokenizer_path: Path, config: EncoderConfig,
                 logit_scale: float, text_precision: str = "fp32") -> None:
        if config.text is None:
            raise RuntimeOptionError("OnnxClipModel needs a config with a text tower")
        self.config = config
        self.context_length = config.text.context_length
        self.visual = visual
        self.text_precision = text_precision
        self.tokenizer = load_tokenizer(str(tokenizer_path))
        self.text_session = visual.settings.session(text_path)
        self.logit_scale = logit_scale

    @property
    def embed_dim(self) -> int:
        """Width of the joint space."""
        return self.config.embed_dim

    @property
    def precision(self) -> str:
        """The image tower's precision."""
        return self.visual.precision

    def similarity_scale(self) -> float:
        """``exp(logit_scale)``, clamped at 100 as in training."""
        return clamped_scale(self.logit_scale)

    def embed_array(self, pixels: np.ndarray, batch_size: int = IMAGE_BATCH) -> np.ndarray:
        """Preprocessed float32 ``[N, C, H, W]`` → unit vectors in the joint space."""
        return self.visual.embed_array(pixels, batch_size)

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = IMAGE_BATCH) -> np.ndarray:
        """PIL images → unit vectors in the joint space."""
        return self.visual.embed_images(images, batch_size)

    def embed_uint8(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """A dataset's uint8 images → unit vectors in the joint space."""
        return self.visual.embed_uint8(images, batch_size)

    def embed_tokens(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """int64 ``ids, mask [B, L]`` → float32 unit vectors ``[B, D]``."""
        return self.text_session.run(["embeddings"], {"ids": ids, "mask": mask})[0]

    def embed_texts(self, texts: Sequence[str], batch_size: int = TEXT_BATCH) -> np.ndarray:
        """Strings → float32 ``[N, D]`` unit vectors."""
        chunks = [self.embed_tokens(*encode_texts(self.tokenizer, texts[i : i + batch_size], self.context_length))
                  for i in range(0, len(texts), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.embed_dim), np.float32)


if TYPE_CHECKING:  # mypy checks here that the onnxruntime classes keep the backend contract
    _IMAGE: type[ImageBackend] = OnnxImageEncoder
    _CLIP: type[ClipBackend] = OnnxClipModel


def _entry_hint(folder: Path) -> str:
    return f"{folder.parent.name}@{folder.name}" if folder.name.isdigit() else f"./{folder}"


def _missing(folder: Path, config: EncoderConfig, precision: str, filename: str, tower: str = "image",
             ) -> NotExportedError:
    """Say why a file is missing: never exported, exported without int8, or int8 missed its gate."""
    hint = _entry_hint(folder)
    exported = config.onnx
    if exported is None or precision == "fp32":
        return NotExportedError(f"{hint} has no {filename}: run `sslzoo export {hint}` first")
    report = exported.get("parity", {}).get(f"{tower}_{precision}")
    if report is None:
        return NotExportedError(f"{hint} has no {filename}: it was exported with --no-int8; "
                                f"run `sslzoo export {hint} --int8`, or use precision='fp32'")
    reason = "; ".join(report.get("failures", []))
    return NotExportedError(f"{hint} has no {filename}: the int8 {tower} tower missed its parity "
                            f"tolerances at export ({reason}); use precision='fp32'")


def _logit_scale(path: Path) -> float:
    with safe_open(str(path), framework="numpy") as handle:
        return float(np.asarray(handle.get_tensor("logit_scale")).reshape(()))


def load_onnx(folder: Path, config: EncoderConfig, *, precision: str = "fp32", intra_op_threads: int = 0,
              inter_op_threads: int = 1, optimization: str = "all", spin: bool = True,
              text_precision: str | None = None, **unknown: Any) -> OnnxImageEncoder | OnnxClipModel:
    """The ``onnx`` backend of :func:`zoo.load`: sessions on an entry's exported files.

    Args:
        folder: The entry's folder.
        config: Its parsed ``config.json``.
        precision: ``fp32`` (``model.onnx``) or ``int8`` (``model.int8.onnx``, written only if it passed
            its parity gate at export).
        intra_op_threads: Threads per operator; 0 is one per physical core (see :class:`SessionSettings`).
        inter_op_threads: Threads running independent operators; 1 suits these chain-shaped graphs.
        optimization: Graph optimisation level, ``all`` by default.
        spin: Let idle worker threads spin (lower latency, more CPU while idle).
        text_precision: The text tower's precision for CLIP entries. By default the same as
            ``precision`` where that file exists, else fp32 (a text tower whose int8 copy missed its
            gate keeps fp32 rather than making the int8 image tower unusable); the choice is logged and
            kept in ``text_precision``.
        **unknown: Rejected with the list of valid options (a typo must not be silently ignored).

    Raises:
        NotExportedError: The entry has no ONNX file for the precision asked for.
        RuntimeOptionError: An unknown option or value (a :class:`zoo.errors.BackendOptionError`).
    """
    if unknown:
        raise RuntimeOptionError(f"unknown onnx backend options {sorted(unknown)}; valid: precision, "
                                 "intra_op_threads, inter_op_threads, optimization, spin, text_precision")
    for value in (precision, text_precision or precision):
        if value not in PRECISIONS:
            raise RuntimeOptionError(f"precision must be one of {PRECISIONS}, got {value!r}")
    settings = SessionSettings(intra_op_threads, inter_op_threads, optimization, spin)
    image_path = folder / IMAGE_FILES[precision]
    if not image_path.is_file():
        raise _missing(folder, config, precision, image_path.name)
    visual = OnnxImageEncoder(image_path, config, settings, precision)
    if config.text is None:
        return visual
    chosen = text_precision or precision
    if text_precision is None and not (folder / TEXT_FILES[chosen]).is_file():
        log.info("%s: no %s; the text tower runs in fp32", _entry_hint(folder), TEXT_FILES[chosen])
        chosen = "fp32"
    text_path = folder / TEXT_FILES[chosen]
    if not text_path.is_file():
        raise _missing(folder, config, chosen, text_path.name, "text")
    return OnnxClipModel(visual, text_path, folder / config.text.tokenizer_file, config,
                         _logit_scale(folder / "text.safetensors"), chosen)
