"""NT-Xent, SimCLR's normalised temperature-scaled cross-entropy (Chen et al. 2020, §2.1, eq. 1).

For ``2N`` views, each view's positive is its twin and its negatives are the other ``2N − 2`` views
(under DDP, every rank's views). The loss is averaged over all ``2N`` anchors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.parts import distributed
from training.parts.losses import LOSSES, check_temperature


@LOSSES.register("ntxent")
class NTXentLoss(nn.Module):
    """NT-Xent over two batches of projections.

    Args:
        temperature: τ in eq. 1. The paper's best is 0.1 on ImageNet with large batches and 0.5 on
            CIFAR-10 (App. B.9), the default here since our images are small and batches modest.
        gather_distributed: Compare with every rank's views when torch.distributed is running.
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature = check_temperature("temperature", temperature)
        self.gather_distributed = gather_distributed

    def forward(self, z0: Tensor, z1: Tensor) -> Tensor:
        """``z0``, ``z1``: ``[B, D]`` projections of two views of the same ``B`` images → scalar loss."""
        if z0.shape != z1.shape or z0.ndim != 2:
            raise ValueError(f"expected two [B, D] tensors of one shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
        z0 = F.normalize(z0.float(), dim=1)
        z1 = F.normalize(z1.float(), dim=1)
        batch = z0.shape[0]
        if self.gather_distributed and distributed.is_distributed():
            all0, all1 = distributed.gather(z0), distributed.gather(z1)
            offset = distributed.rank() * batch
        else:
            all0, all1, offset = z0, z1, 0
        total = all0.shape[0]
        if total < 2:
            raise ValueError("NT-Xent needs at least 2 images across all ranks (one has no negatives)")
        candidates = torch.cat([all0, all1])  # [2T, D]: every view of every rank
        anchors = torch.cat([z0, z1])  # [2B, D]: this rank's views
        logits = anchors @ candidates.T / self.temperature
        local = torch.arange(batch, device=z0.device) + offset
        self_index = torch.cat([local, local + total])
        positive = torch.cat([local + total, local])
        logits = logits.masked_fill(F.one_hot(self_index, 2 * total).bool(), float("-inf"))
        return F.cross_entropy(logits, positive)
