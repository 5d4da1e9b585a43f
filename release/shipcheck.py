"""Parity of a shipped entry, recorded at ship time and re-checkable forever after.

A shipped entry stores its weights compactly (fp16) and may reference a package's weights, so its
vectors are not bit-identical to those of the trained entry it came from. How far they may differ is
measured once, on a fixed deterministic *probe* (the first images of the entry's own dataset's test
split, plus a few of its captions or class names for a CLIP), and recorded in
``config.shipped["parity"]``: max |Δ| and min cosine of shipped-torch vs source, and of the
shipped ONNX graph vs source and vs shipped-torch. The source's probe embeddings travel with the entry
as ``golden.npz`` (covered by the manifest), so :func:`check_entry` can reproduce every figure without
the source: a changed weight byte fails the manifest, a changed computation fails the figures.

The figures are :func:`export.parity.vector_figures` and the ONNX side runs through the export
runtime (:class:`export.runtime.OnnxImageEncoder`), single-threaded so every machine that re-checks
or times an entry runs the same session. Torch is imported by the functions that need it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.parity import vector_figures
from export.runtime import OnnxImageEncoder, SessionSettings
from zoo.config import EncoderConfig
from zoo.errors import ConfigError

GOLDEN = "golden.npz"
#: What fp16 storage must keep against the fp32 source on the probe, or the entry is stored in fp32.
#: Rounding a weight to fp16 moves it by at most 2^-11 of its size; through a dozen layers that moves
#: a unit embedding by ~1e-3, so a cosine below 0.999 (2.6°) means something worse than rounding.
MIN_COSINE = 0.999
#: Slack when reproducing a recorded figure on another run or machine (thread count and SIMD width
#: change summation order, which moves fp32 results by ~1e-6).
REPRODUCE_ABS = 2e-5
REPRODUCE_REL = 0.1
#: One thread per operator and sequential operators: the same session on every machine that re-checks
#: or times a shipped graph.
PROBE_SESSION = SessionSettings(intra_op_threads=1, inter_op_threads=1)


@dataclass(frozen=True)
class ProbeSpec:
    """The fixed inputs parity is measured on: which dataset split, how many images and texts."""

    dataset: str
    split: str = "test"
    n_images: int = 256
    n_texts: int = 16
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``config.json``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ProbeSpec:
        """Rebuild a recorded spec."""
        return cls(**raw)


def default_probe(config: EncoderConfig) -> ProbeSpec:
    """The probe for an entry: its own dataset's test split (``digits`` when it names none).

    An entry trained on several sets names them all (``shapes/train + emoji/train``); the first is probed.
    """
    first = re.split(r"[\s+/]+", config.data.strip())[0] if config.data.strip() else ""
    return ProbeSpec(dataset=first or "digits")


def probe_inputs(spec: ProbeSpec, with_texts: bool) -> tuple[np.ndarray, list[str]]:
    """The probe's uint8 images and, for a CLIP, its texts (first captions, else class names)."""
    from zoo.data import load_dataset

    data = load_dataset(spec.dataset, spec.split, seed=spec.seed)
    images = data.images[: spec.n_images]
    texts: list[str] = []
    if with_texts:
        if data.captions:
            texts = [caps[0] for caps in data.captions[: spec.n_texts] if caps]
        elif data.class_names:
            texts = list(data.class_names[: spec.n_texts])
    return images, texts


def torch_embeddings(model: Any, images: np.ndarray, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """A torch model's probe embeddings: ``image`` always, ``text`` for a CLIP with texts."""
    out = {"image": np.asarray(model.embed_uint8(images), np.float32)}
    if texts and callable(getattr(model, "embed_texts", None)):
        out["text"] = np.asarray(model.embed_texts(list(texts)), np.float32)
    return out


def onnx_image_encoder(path: Path, config: EncoderConfig) -> OnnxImageEncoder:
    """An image graph on :data:`PROBE_SESSION`, preprocessing as every backend does."""
    return OnnxImageEncoder(path, config, PROBE_SESSION)


def golden_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """``golden.npz`` content: plain float32 arrays (no pickled objects)."""
    buffer = io.BytesIO()
    plain: dict[str, Any] = {k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()}
    np.savez(buffer, **plain)
    return buffer.getvalue()


def read_golden(folder: Path) -> dict[str, np.ndarray]:
    """The source embeddings stored with a shipped entry."""
    with np.load(folder / GOLDEN, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def measure(folder: Path, config: EncoderConfig, golden: Mapping[str, np.ndarray], onnx_files: Sequence[str],
            ) -> dict[str, dict[str, dict[str, float]]]:
    """Every parity figure of the entry in ``folder`` against ``golden`` (the source's embeddings).

    Returns ``{"torch": {"image": ..., "text": ...}, "onnx": {"image": ...}, "onnx_vs_torch": {...}}``;
    the ONNX parts only when ``onnx_files`` holds ``model.onnx``.
    """
    from zoo.torch_backend import load_torch

    if config.shipped is None:
        raise ConfigError(f"{folder} has no 'shipped' record with the probe to measure on")
    spec = ProbeSpec.from_dict(config.shipped["probe"])
    images, texts = probe_inputs(spec, config.is_clip)
    shipped = torch_embeddings(load_torch(folder, config), images, texts)
    figures: dict[str, dict[str, dict[str, float]]] = {
        "torch": {tower: vector_figures(golden[tower], vectors) for tower, vectors in shipped.items()}}
    if "model.onnx" in onnx_files:
        onnx = onnx_image_encoder(folder / "model.onnx", config).embed_uint8(images)
        figures["onnx"] = {"image": vector_figures(golden["image"], onnx)}
        figures["onnx_vs_torch"] = {"image": vector_figures(shipped["image"], onnx)}
    return figures


def compare(recorded: Mapping[str, Any], reproduced: Mapping[str, Any]) -> list[str]:
    """Where reproduced figures are worse than recorded beyond run-to-run slack (empty: all hold)."""
    failures = []
    for side, towers in recorded.items():
        for tower, figures in towers.items():
            now = reproduced.get(side, {}).get(tower)
            if now is None:
                failures.append(f"{side}/{tower}: recorded but not reproducible")
                continue
            limit = figures["max_abs_diff"] * (1 + REPRODUCE_REL) + REPRODUCE_ABS
            if not now["max_abs_diff"] <= limit:
                failures.append(f"{side}/{tower}: max|Δ| {now['max_abs_diff']:.3g} > recorded "
                                f"{figures['max_abs_diff']:.3g} (+slack)")
            if not now["min_cosine"] >= figures["min_cosine"] - REPRODUCE_ABS:
                failures.append(f"{side}/{tower}: min cosine {now['min_cosine']:.6f} < recorded "
                                f"{figures['min_cosine']:.6f}")
    return failures


def check_entry(entry: Any) -> tuple[dict[str, Any], list[str]]:
    """Verify a shipped entry's manifest and reproduce its recorded parity; returns figures and failures.

    Raises:
        ManifestError: A file differs from the manifest (a changed weight byte ends here).
        ExternalWeightsError: A referenced package file is missing or different.
    """
    entry.verify()
    config: EncoderConfig = entry.read_config()
    shipped = config.shipped
    if shipped is None:
        return {}, [f"{entry.ref} has no 'shipped' record: not made by `sslzoo ship`"]
    reproduced = measure(entry.path, config, read_golden(entry.path), shipped.get("onnx_files", []))
    failures = compare(shipped["parity"], reproduced)
    for tower, figures in reproduced.get("torch", {}).items():
        if not figures["min_cosine"] >= MIN_COSINE:
            failures.append(f"torch/{tower}: min cosine {figures['min_cosine']:.6f} below the ship gate {MIN_COSINE}")
    return reproduced, failures
