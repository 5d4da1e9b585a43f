"""PyTorch → ONNX for one tower: dynamic batch axis only, named inputs and outputs, checked.

The exporter is torch's ``torch.export``-based one (``dynamo=True``, the default since torch 2.9).
In torch 2.14 the legacy TorchScript exporter still runs but is deprecated, warns about traced
Python values in timm's ViT, and names the embedding axis ``Divembeddings_dim_1`` instead of the
width; the dynamo graph has static widths, a single ``batch`` symbol, and about half the nodes.
Resolution stays fixed (ViT position embeddings are not interpolated in the graph).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

from export import DEFAULT_OPSET
from export.errors import ExportError, UnsupportedOperatorError
from export.graph import ImageGraph, TextGraph
from zoo.clip import ClipModel
from zoo.encoders import ImageEncoder

log = logging.getLogger(__name__)

MAX_BATCH = 65536
BATCH_AXIS = "batch"
IMAGE_INPUT, TEXT_INPUTS, OUTPUT = "pixels", ("ids", "mask"), "embeddings"
_CHATTY_LOGGERS = ("onnxscript", "onnx_ir")
_NO_ONNX_FUNCTION = re.compile(r"No ONNX function found for <OpOverload\(op='([^']+)'")


def _operators_without_mapping(exc: BaseException) -> tuple[str, ...]:
    """Operator names the exporter reported as untranslatable, anywhere in the exception chain."""
    found: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found += [op for op in _NO_ONNX_FUNCTION.findall(str(current)) if op not in found]
        current = current.__cause__ or current.__context__
    return tuple(found)


@contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    """The exporter's optimiser logs every rewrite at INFO; keep the CLI's INFO output readable."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_module(module: nn.Module, example: Sequence[Tensor], path: Path, input_names: Sequence[str],
                  opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Export ``module`` with every input's first axis dynamic; returns the checked model (also at ``path``).

    ``input_names`` must be the parameter names of ``module.forward``: they key the dynamic shapes and
    become the graph's input names.

    Raises:
        UnsupportedOperatorError: An operator has no ONNX translation; the message names it.
        ExportError: Tracing or conversion failed for another reason, or the checker rejects the graph.
    """
    batch = torch.export.Dim(BATCH_AXIS, min=1, max=MAX_BATCH)
    dynamic = {name: {0: batch} for name in input_names}
    module = module.eval()
    try:
        with warnings.catch_warnings(), _quiet_exporter_logs(), torch.inference_mode(False), torch.no_grad():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.onnx.*")
            torch.onnx.export(module, tuple(example), str(path), dynamo=True, verbose=False, external_data=False,
                              input_names=list(input_names), output_names=[OUTPUT], opset_version=opset,
                              dynamic_shapes=dynamic)
    except Exception as exc:  # the exporter raises many types; all become one clear error
        operators = _operators_without_mapping(exc)
        if operators:
            raise UnsupportedOperatorError(
                f"{type(module).__name__} uses {', '.join(operators)}, which torch {torch.__version__} cannot "
                f"translate to ONNX opset {opset}; replace the operator in the model or register an ONNX "
                "translation for it (torch.onnx.export(custom_translation_table=...))", operators) from exc
        summary = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"torch.onnx.export failed for {type(module).__name__}: {summary}") from exc
    model = check_model(path)
    produced = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if produced != opset:
        path.unlink(missing_ok=True)
        raise ExportError(f"asked for ONNX opset {opset} but torch {torch.__version__}'s exporter produced {produced} "
                          f"(it translates to opset {DEFAULT_OPSET} and up, and converts only where the ONNX version "
                          f"converter can); use --opset {DEFAULT_OPSET} or a newer opset up to "
                          f"{onnx.defs.onnx_opset_version()}")
    return model


def check_model(path: Path) -> onnx.ModelProto:
    """Run the ONNX checker (with shape inference) on a saved model; its complaints become ExportError."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{path.name} fails the ONNX checker: {exc}") from exc
    return onnx.load(str(path))


def export_image_tower(encoder: ImageEncoder, path: Path, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """``pixels [batch, C, H, W]`` → ``embeddings [batch, D]`` at the entry's fixed resolution."""
    channels, height, width = encoder.config.preprocess.input_size
    example = torch.randn(2, channels, height, width)
    graph = ImageGraph(encoder.backbone, encoder.config.normalize)
    return export_module(graph, [example], path, [IMAGE_INPUT], opset)


def export_text_tower(clip: ClipModel, path: Path, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """``ids, mask [batch, context_length]`` (int64) → unit ``embeddings [batch, D]``."""
    if clip.config.text is None:
        raise ExportError("the entry has no text tower to export")
    ids, mask = clip.text.tokenize(["an example caption", "a"])
    return export_module(TextGraph(clip.text.tower), [ids, mask], path, list(TEXT_INPUTS), opset)


def graph_signature(model: onnx.ModelProto) -> dict[str, dict[str, list[int | str]]]:
    """Names and shapes of a model's inputs and outputs (``batch`` for the dynamic axis), for config.json."""

    def shape(value: onnx.ValueInfoProto) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    return {"inputs": {v.name: shape(v) for v in model.graph.input},
            "outputs": {v.name: shape(v) for v in model.graph.output}}
