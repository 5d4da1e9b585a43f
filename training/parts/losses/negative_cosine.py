"""Negative cosine similarity: SimSiam's ``D(p, z)`` (Chen & He 2021, eq. 1) and BYOL's normalised MSE.

BYOL's loss ``‖p̄ − z̄‖² = 2 − 2·cos(p, z)`` (Grill et al. 2020, eq. 2) is the same up to an affine map.
The loss does not detach: the method applies the stop-gradient to the target, where the paper does.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from training.parts.losses import LOSSES


@LOSSES.register("negative_cosine")
class NegativeCosineLoss(nn.Module):
    """Mean over the batch of ``−cos(p, z)`` or, with ``normalized_mse``, of ``2 − 2·cos(p, z)``.

    Args:
        normalized_mse: BYOL's form (eq. 2) instead of SimSiam's.
        eps: Floor on vector norms, so a zero vector gives a finite loss.
    """

    def __init__(self, normalized_mse: bool = False, eps: float = 1e-8) -> None:
        super().__init__()
        if not 0.0 < eps < 1e-2:
            raise ValueError(f"eps must be in (0, 0.01), got {eps}")
        self.normalized_mse = normalized_mse
        self.eps = eps

    def forward(self, p: Tensor, z: Tensor) -> Tensor:
        """``p``: ``[B, D]`` predictions, ``z``: ``[B, D]`` targets (detach them first) → scalar loss."""
        if p.shape != z.shape:
            raise ValueError(f"prediction and target shapes differ: {tuple(p.shape)} vs {tuple(z.shape)}")
        cos = F.cosine_similarity(p.float(), z.float(), dim=-1, eps=self.eps).mean()
        return 2.0 - 2.0 * cos if self.normalized_mse else -cos
