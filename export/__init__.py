"""ONNX export with a parity gate, int8 quantisation, and an onnxruntime runtime that needs no torch.

Two halves with different dependencies:

- export time (needs torch): :mod:`export.graph`, :mod:`export.onnx_export`, :mod:`export.pipeline`
  turn a registry entry into ONNX files, check them against PyTorch and save a new entry version;
- run time (numpy, pillow, tokenizers, onnxruntime only): :mod:`export.runtime` is what
  ``zoo.load(ref, backend="onnx")`` returns.

This module imports neither half, so ``import export.runtime`` never pulls in torch.
"""

from __future__ import annotations

from export.errors import ExportError, NotExportedError, ParityError, RuntimeOptionError, UnsupportedOperatorError

#: ONNX opset of exported graphs: LayerNormalization (17) is native, and every onnxruntime.quantization
#: tool used here handles it. Kept here, away from torch, so the CLI can show it without importing torch.
DEFAULT_OPSET = 18

__all__ = [
    "DEFAULT_OPSET","ExportError", "NotExportedError", "ParityError", "RuntimeOptionError", "UnsupportedOperatorError"]
