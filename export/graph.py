"""The modules that are traced into ONNX: a tower plus its embedding contract, written for export.

The contract (pooling, then L2 normalisation) lives inside the graph so a client needs only
onnxruntime and numpy. Pooling is the timm backbone's own (``global_pool`` is an architecture
argument). Normalisation is re-written rather than taken from ``F.normalize``: that function's
``expand_as`` and ``ReduceL2`` (whose axes became an input in opset 18) are not understood by
onnxruntime's symbolic shape inference, which ``quant_pre_process`` runs before int8 quantisation.
``sqrt(sum(v²))`` clamped at the same ``eps`` is the same function, and the parity gate checks it
against ``ImageEncoder.forward`` itself, so any drift would be caught.
"""

from __future__ import annotations

from torch import Tensor, nn

NORM_EPS = 1e-12  # F.normalize's default, so the graph and ImageEncoder.forward agree


def l2_normalize(vectors: Tensor, eps: float = NORM_EPS) -> Tensor:
    """``F.normalize(vectors, dim=-1)`` as ReduceSum, Sqrt, Clip and Div (ops every ONNX tool knows)."""
    norm = (vectors * vectors).sum(dim=-1, keepdim=True).sqrt().clamp_min(eps)
    return vectors / norm


class ImageGraph(nn.Module):
    """``pixels [B, C, H, W]`` (standardised) → ``embeddings [B, D]`` under the entry's contract."""

    def __init__(self, backbone: nn.Module, normalize: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.normalize = normalize

    def forward(self, pixels: Tensor) -> Tensor:
        vectors = self.backbone(pixels)
        return l2_normalize(vectors) if self.normalize else vectors


class TextGraph(nn.Module):
    """``ids, mask [B, L]`` (int64) → unit ``embeddings [B, D]``; text vectors are always normalised."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        return l2_normalize(self.tower(ids, mask))
