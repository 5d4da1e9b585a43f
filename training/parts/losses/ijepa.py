"""I-JEPA's latent prediction loss (Assran et al. 2023, §3, eq. 1).

The predictor's outputs for each target block are regressed onto the target encoder's (layer-normed)
embeddings of those patches. The paper writes an L2 distance; the official code uses smooth L1, the
default here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.parts.losses import LOSSES

_KINDS = ("smooth_l1", "l2")


@LOSSES.register("ijepa")
class IJEPALoss(nn.Module):
    """Distance between predicted and target patch embeddings, averaged over blocks, patches and features.

    Args:
        kind: ``smooth_l1`` (official code, β = 1) or ``l2`` (mean squared error, eq. 1).
    """

    def __init__(self, kind: str = "smooth_l1") -> None:
        super().__init__()
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.kind = kind

    def forward(self, predictions: Sequence[Tensor], targets: Sequence[Tensor]) -> Tensor:
        """One ``[B, M, D]`` prediction and target per target block (detach the targets) → scalar loss."""
        if len(predictions) != len(targets) or not predictions:
            raise ValueError(f"need one target per prediction, got {len(predictions)} and {len(targets)}")
        losses = []
        for pred, target in zip(predictions, targets, strict=True):
            if pred.shape != target.shape:
                raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
            fn = F.smooth_l1_loss if self.kind == "smooth_l1" else F.mse_loss
            losses.append(fn(pred.float(), target.float()))
        return torch.stack(losses).mean()
