"""``sslzoo export``: ONNX files for a registry entry, gated on parity, saved as a new version.

Why a new version and not files added beside the old ones: versions are immutable (their manifest
covers every file, and ``verify_manifest`` refuses ONNX files it does not list), so a service that
pinned ``name@3`` keeps exactly what it tested. The new version holds the same weight files, byte for
byte, so its ``embedding_space`` id is unchanged and vectors from either version can share an index.
Its ``config.json`` records the parity figures, tolerances and export settings under
``onnx``, and the headline figures go to ``metrics`` so the model card shows them.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort
import torch

from export.checks import ImageEmbeddings, check_image, check_text, torch_text
from export.errors import ExportError, ParityError
from export.golden import ImageSets, ParitySizes, image_sets, text_inputs
from export.onnx_export import DEFAULT_OPSET, export_image_tower, export_text_tower, graph_signature
from export.parity import FP32_TOLERANCE, INT8_TOLERANCE, ParityReport, Tolerance
from export.quantize import (
    DYNAMIC_OP_TYPES,
    STATIC_OP_TYPES,
    bf16_supported,
    quantize_image_static,
    quantize_text_dynamic,
)
from export.runtime import IMAGE_FILES, TEXT_FILES
from zoo.api import locate, save_files
from zoo.clip import ClipModel
from zoo.config import EncoderConfig
from zoo.encoders import ImageEncoder
from zoo.manifest import MANIFEST
from zoo.registry import CARD, CONFIG, Entry, Registry
from zoo.torch_backend import load_torch

log = logging.getLogger(__name__)
_FIGURE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


@dataclass
class ExportResult:
    """What an export produced: the source entry, the new one, and every parity report by key."""

    source: Entry
    entry: Entry
    reports: dict[str, ParityReport] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def _require(report: ParityReport) -> None:
    if not report.passed:
        raise ParityError(
            f"the {report.precision} ONNX {report.tower} tower misses the parity tolerances against "
            f"{report.reference}: {'; '.join(report.failures)}. Nothing was saved.", report.to_dict())


def _keep_if_passed(report: ParityReport, path: Path) -> ParityReport:
    """The int8 decision: a quantised file that misses its tolerance is deleted, with the reason logged."""
    if not report.passed:
        path.unlink(missing_ok=True)
        log.warning("int8 %s tower not written: %s", report.tower, "; ".join(report.failures))
    return report


def quantize_image_gated(fp32: Path, target: Path, config: EncoderConfig, sets: ImageSets,
                         fp32_vectors: ImageEmbeddings, tolerance: Tolerance = INT8_TOLERANCE) -> ParityReport:
    """Quantise an fp32 image graph, compare it with that graph, and keep ``target`` only if it passes.

    Returns:
        The int8 report; ``target`` exists afterwards exactly when ``report.passed``.
    """
    quantize_image_static(fp32, target, sets.calibration)
    report, _ = check_image(target, config, sets, fp32_vectors, tolerance, "int8", "onnx fp32")
    return _keep_if_passed(report, target)


def _default_name(source: Entry) -> str:
    """The source's registry name; for a folder, its name (its parent's if it is a version folder like ``3``)."""
    if source.version is None and source.name.isdigit():
        return source.path.parent.name
    return source.name


def _old_files(source: Entry) -> dict[str, bytes]:
    """The entry's files to carry over: everything but what the new version regenerates or replaces."""
    regenerated = {CONFIG, CARD, MANIFEST, *IMAGE_FILES.values(), *TEXT_FILES.values()}
    return {p.relative_to(source.path).as_posix(): p.read_bytes() for p in sorted(source.path.rglob("*"))
            if p.is_file() and p.relative_to(source.path).as_posix() not in regenerated}


def _figures(source: Entry, files: dict[str, bytes]) -> dict[str, str]:
    """Figures shown in the old card that still exist, so the new card keeps them."""
    card = source.path / CARD
    text = card.read_text() if card.is_file() else ""
    return {caption: path for caption, path in _FIGURE.findall(text) if path in files}


def _metrics(reports: dict[str, ParityReport], written: dict[str, str]) -> dict[str, Any]:
    """Headline figures per report for the card: worst gated max-abs and cosine distance, agreement."""
    out: dict[str, Any] = {}
    for key, report in reports.items():
        gated = [f for f in report.figures.values() if f.get("gated") and "min_cosine" in f]
        agreement = [v for f in report.figures.values() for k, v in f.items() if k.endswith("_agreement")]
        split = f"vs {report.reference}"
        if report.precision == "fp32":
            out[f"onnx_{key}_max_abs_diff"] = {"value": max(f["rel_max_abs_diff"] for f in gated), "split": split}
        out[f"onnx_{key}_max_cosine_distance"] = {"value": max(1.0 - f["min_cosine"] for f in gated), "split": split}
        out[f"onnx_{key}_top1_agreement"] = {"value": min(agreement), "split": split}
        if report.precision == "int8":
            out[f"onnx_{key}_written"] = {"value": "yes" if key in written else "no (missed tolerance)",
                                          "split": split}
    return out


def _export_image(encoder: ImageEncoder, config: EncoderConfig, tmp: Path, sets: ImageSets, int8: bool,
                  tolerances: tuple[Tolerance, Tolerance], opset: int) -> dict[str, Any]:
    """Export and gate the image tower (and its static int8 copy); returns reports, paths, vectors, signature."""
    fp32 = tmp / IMAGE_FILES["fp32"]
    signature = graph_signature(export_image_tower(encoder, fp32, opset))
    vectors = {"torch": ImageEmbeddings.from_torch(encoder, sets)}
    report, vectors["onnx"] = check_image(fp32, config, sets, vectors["torch"], tolerances[0], "fp32", "torch")
    _require(report)
    out: dict[str, Any] = {"reports": {"image_fp32": report}, "paths": {"image_fp32": fp32}, "vectors": vectors,
                           "signature": signature}
    if int8:
        target = tmp / IMAGE_FILES["int8"]
        out["reports"]["image_int8"] = quantize_image_gated(fp32, target, config, sets, vectors["onnx"], tolerances[1])
        if target.is_file():
            out["paths"]["image_int8"] = target
    return out


def _export_text(clip: ClipModel, tmp: Path, sets: ImageSets, image_vectors: dict[str, ImageEmbeddings],
                 int8: bool, tolerances: tuple[Tolerance, Tolerance], opset: int) -> dict[str, Any]:
    """Export and gate the text tower (and its dynamic int8 copy); returns reports, paths, signature."""
    tokens = text_inputs(clip.text.tokenizer, sets.captions, clip.text.config.context_length)
    n_captions = len(sets.captions)
    fp32 = tmp / TEXT_FILES["fp32"]
    graph = export_text_tower(clip, fp32, opset)
    reference = torch_text(clip.text, tokens)
    golden = {side: vectors.vectors["golden"] for side, vectors in image_vectors.items()}
    report, onnx_vectors = check_text(fp32, tokens, reference, (golden["torch"], golden["onnx"]), n_captions,
                                      tolerances[0], "fp32", "torch")
    _require(report)
    out: dict[str, Any] = {"reports": {"text_fp32": report}, "paths": {"text_fp32": fp32},
                           "signature": graph_signature(graph)}
    if int8:
        quantized = tmp / TEXT_FILES["int8"]
        quantize_text_dynamic(fp32, quantized)
        report8, _ = check_text(quantized, tokens, onnx_vectors, (golden["onnx"], golden["onnx"]), n_captions,
                                tolerances[1], "int8", "onnx fp32")
        out["reports"]["text_int8"] = _keep_if_passed(report8, quantized)
        if quantized.is_file():
            out["paths"]["text_int8"] = quantized
    return out


def _onnx_info(source: Entry, opset: int, reports: dict[str, ParityReport], written: dict[str, str],
               signatures: dict[str, Any], n_calibration: int) -> dict[str, Any]:
    bf16_ok, bf16_note = bf16_supported()
    return {
        "source": source.ref, "opset": opset, "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
        "onnxruntime": ort.__version__, "files": written, "signature": signatures,
        "quantization": {
            "image": f"static QDQ, uint8 activations / int8 per-channel weights (U8S8), MinMax calibration on "
                     f"{n_calibration} bundled images (digits + shapes), ops {list(STATIC_OP_TYPES)}",
            **({"text": f"dynamic, int8 per-channel weights, ops {list(DYNAMIC_OP_TYPES)}"} if "text" in signatures
               else {}),
        },
        "bf16": {"supported": bf16_ok, "note": bf16_note},
        "parity": {key: report.to_dict() for key, report in reports.items()},
    }


def export_entry(ref: str | Path, *, int8: bool = True, opset: int = DEFAULT_OPSET, name: str | None = None,
                 sizes: ParitySizes | None = None, fp32_tolerance: Tolerance = FP32_TOLERANCE,
                 int8_tolerance: Tolerance = INT8_TOLERANCE, registry: Registry | None = None) -> ExportResult:
    """Export an entry's towers, gate them on parity, and save the result as a new version.

    Args:
        ref: Any reference :func:`zoo.locate` accepts.
        int8: Also quantise; each int8 file is written only if it meets ``int8_tolerance``.
        opset: ONNX opset of the exported graphs.
        name: Registry name of the new version; the source's name by default (built-in models and
            read-only sources need another one).
        sizes: How many golden, random, labelled and calibration images the gate uses.
        fp32_tolerance: What the fp32 graphs must meet against PyTorch, or nothing is saved.
        int8_tolerance: What an int8 graph must meet against its fp32 graph to be written.
        registry: Defaults to the one under ``$SSLZOO_HOME``.

    Raises:
        RefError: ``ref`` names nothing.
        UnsupportedOperatorError: The model uses an operator with no ONNX translation.
        ParityError: An fp32 graph misses ``fp32_tolerance``; nothing is saved.
    """
    registry = registry or Registry()
    source = locate(ref, registry)
    source.verify()
    config: EncoderConfig = source.read_config()
    model = load_torch(source.path, config)
    encoder = model.visual if isinstance(model, ClipModel) else model
    if not isinstance(encoder, ImageEncoder):
        raise ExportError(f"{source.ref} did not load as an image encoder ({type(encoder).__name__})")
    sets = image_sets(config.preprocess, sizes)
    tolerances = (fp32_tolerance, int8_tolerance)
    with tempfile.TemporaryDirectory(prefix="sslzoo-export-") as folder:
        tmp = Path(folder)
        image = _export_image(encoder, config, tmp, sets, int8, tolerances, opset)
        reports, paths, signatures = image["reports"], image["paths"], {"image": image["signature"]}
        if isinstance(model, ClipModel):
            text = _export_text(model, tmp, sets, image["vectors"], int8, tolerances, opset)
            reports.update(text["reports"])
            paths.update(text["paths"])
            signatures["text"] = text["signature"]
        files = _old_files(source)
        figures = _figures(source, files)
        files.update({path.name: path.read_bytes() for path in paths.values()})
    written = {key: path.name for key, path in paths.items()}
    info = _onnx_info(source, opset, reports, written, signatures, len(sets.calibration))
    kept = {k: v for k, v in config.metrics.items() if not k.startswith("onnx_")}  # a re-export replaces them
    new_config = config.replace(onnx=info, metrics={**kept, **_metrics(reports, written)})
    entry = save_files(name or _default_name(source), new_config, files, figures=figures or None, registry=registry)
    log.info("exported %s -> %s", source.ref, entry.ref)
    return ExportResult(source, entry, reports, written)
