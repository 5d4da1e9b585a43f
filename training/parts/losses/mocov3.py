"""MoCo v3's contrastive loss (Chen, Xie, He 2021, Algorithm 1).

Queries from the online branch are compared with keys from the momentum branch; the positive is the
same image's key and the negatives are the other keys in the (global) batch. The paper scales the
cross-entropy by ``2τ`` so the gradient magnitude does not depend on the temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.parts import distributed
from training.parts.losses import LOSSES, check_temperature


@LOSSES.register("mocov3")
class MoCoV3Loss(nn.Module):
    """InfoNCE of queries against momentum keys, ``ctr(q, k)`` in Algorithm 1.

    Args:
        temperature: τ; 0.2 for ViTs in the paper (§4), 1.0 in its ResNet code.
        scale_by_temperature: Multiply by ``2τ`` as Algorithm 1 does.
        gather_distributed: Use every rank's keys as negatives under torch.distributed.
    """

    def __init__(self, temperature: float = 0.2, scale_by_temperature: bool = True,
                 gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature = check_temperature("temperature", temperature)
        self.scale_by_temperature = scale_by_temperature
        self.gather_distributed = gather_distributed

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        """``q``: ``[B, D]`` predictions, ``k``: ``[B, D]`` momentum projections of the other view → loss."""
        if q.shape != k.shape or q.ndim != 2:
            raise ValueError(f"expected two [B, D] tensors of one shape, got {tuple(q.shape)} and {tuple(k.shape)}")
        q = F.normalize(q.float(), dim=1)
        k = F.normalize(k.float(), dim=1)
        offset = 0
        if self.gather_distributed and distributed.is_distributed():
            offset = distributed.rank() * q.shape[0]
            k = distributed.gather(k)
        logits = q @ k.T / self.temperature
        labels = torch.arange(q.shape[0], device=q.device) + offset
        loss = F.cross_entropy(logits, labels)
        return loss * (2.0 * self.temperature) if self.scale_by_temperature else loss
