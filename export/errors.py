"""Errors of the export package, all :class:`zoo.errors.SslzooError` so the CLI prints one clear line.

A failed export must never leave a half-trusted ONNX file in the registry, so every way it can fail
(an operator the exporter cannot translate, a graph that misses the parity tolerances, an entry that
was never exported) has its own class that callers and tests can tell apart.
"""

from __future__ import annotations

from typing import Any

from zoo.errors import BackendOptionError, SslzooError


class ExportError(SslzooError):
    """The PyTorch model could not be turned into a valid ONNX graph."""


class UnsupportedOperatorError(ExportError):
    """The model uses an operator that has no ONNX translation in this torch version.

    Attributes:
        operators: The operator names the exporter could not translate (``aten.linalg_eig``, ...).
    """

    def __init__(self, message: str, operators: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.operators = operators


class ParityError(ExportError):
    """The ONNX graph's outputs differ from PyTorch's by more than the stated tolerances.

    Attributes:
        figures: The measured figures, so a caller can show what was missed and by how much.
    """

    def __init__(self, message: str, figures: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.figures = figures or {}


class NotExportedError(SslzooError):
    """An entry asked for through the ONNX backend has no ONNX file for the requested precision."""


class RuntimeOptionError(BackendOptionError):
    """An option the onnxruntime backend does not understand, or a value it cannot use."""
