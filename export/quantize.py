"""int8 versions of an exported tower with ``onnxruntime.quantization``.

Image towers: *static* QDQ quantisation, U8S8 (uint8 activations, int8 per-channel weights), with
activation ranges calibrated on bundled images. On CPUs with AVX-512 VNNI onnxruntime fuses the QDQ
pairs into integer convolutions and matmuls; uint8 × int8 is the combination those kernels are fast
for, and per-channel weights keep narrow filters from losing their range to wide ones.

Text towers: *dynamic* quantisation (weights int8 ahead of time, activation ranges computed per
batch). Token activations vary far more from sentence to sentence than pixel activations, which a
calibration set of captions would not bound well, and the embedding gather is untouched either way.

Both start from ``quant_pre_process`` (symbolic shape inference plus graph optimisation), which
the onnxruntime docs require for good QDQ placement. Numpy and onnxruntime only: no torch.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.errors import ExportError

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 16
#: Only the ops that carry the FLOPs. Quantising Add/Mul/Softmax/LayerNorm too costs accuracy in ViTs
#: (residual streams have outliers) and buys little speed, since they are memory-bound.
STATIC_OP_TYPES = ("Conv", "MatMul", "Gemm")
DYNAMIC_OP_TYPES = ("MatMul", "Gemm")


class ArrayCalibration(CalibrationDataReader):
    """Feeds a float32 array to the calibrator in fixed-size batches, once."""

    def __init__(self, input_name: str, images: np.ndarray, batch_size: int = CALIBRATION_BATCH) -> None:
        if len(images) == 0:
            raise ExportError("int8 calibration needs at least one image")
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            {input_name: np.ascontiguousarray(images[i : i + batch_size], dtype=np.float32)}
            for i in range(0, len(images), batch_size))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs every skipped tensor through the root logger at INFO."""
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime.quantization")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _pre_process(source: Path, target: Path) -> None:
    try:
        quant_pre_process(str(source), str(target))
    except Exception as exc:  # shape inference fails on graphs it does not understand
        raise ExportError(f"quant_pre_process failed on {source.name}: {exc}") from exc


def quantize_image_static(source: Path, target: Path, calibration: np.ndarray, input_name: str = "pixels",
                          op_types: tuple[str, ...] = STATIC_OP_TYPES) -> None:
    """Write a QDQ U8S8 per-channel int8 copy of ``source`` calibrated (min/max) on ``calibration``."""
    with tempfile.TemporaryDirectory(prefix="sslzoo-quant-") as tmp, _quiet_root_logger():
        prepared = Path(tmp) / "prepared.onnx"
        _pre_process(source, prepared)
        quantize_static(str(prepared), str(target), ArrayCalibration(input_name, calibration),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=list(op_types),
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"CalibTensorRangeSymmetric": False})
    log.info("static int8: %s -> %s", source.name, target.name)


def quantize_text_dynamic(source: Path, target: Path, op_types: tuple[str, ...] = DYNAMIC_OP_TYPES) -> None:
    """Write a dynamically quantised (int8 weights, per-batch uint8 activations) copy of ``source``."""
    with tempfile.TemporaryDirectory(prefix="sslzoo-quant-") as tmp, _quiet_root_logger():
        prepared = Path(tmp) / "prepared.onnx"
        _pre_process(source, prepared)
        quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=list(op_types))
    log.info("dynamic int8: %s -> %s", source.name, target.name)


def bf16_supported() -> tuple[bool, str]:
    """Whether this onnxruntime's CPU provider can run a bfloat16 MatMul, and what it said.

    AVX-512 BF16 in the CPU is not enough: the execution provider needs bfloat16 kernels, so the
    answer is probed rather than assumed.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    value = [helper.make_tensor_value_info(n, TensorProto.BFLOAT16, [2, 2]) for n in ("a", "b", "y")]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"])], "bf16_probe", value[:2], value[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    try:
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # NOT_IMPLEMENTED is the expected answer on x86 builds
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return False, f"onnxruntime {ort.__version__} CPUExecutionProvider: {first}"
    return True, f"onnxruntime {ort.__version__} CPUExecutionProvider runs bfloat16 MatMul"
