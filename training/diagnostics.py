"""Collapse diagnostics computed from a batch of embeddings as training runs.

Two numbers say whether a self-supervised encoder is collapsing:

* the per-dimension standard deviation of L2-normalised embeddings, relative to ``1/sqrt(D)`` (its value
  for vectors spread uniformly over the sphere; SimSiam, Chen & He 2021, §4): 1 when spread, 0 when every
  input maps to one point;
* the effective rank (Roy & Vetterli 2007; RankMe, Garrido et al. 2023): ``exp`` of the entropy of the
  normalised singular values, between 1 (dimensional collapse onto a line) and ``min(B, D)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)


def normalized_std(embeddings: Tensor) -> float:
    """Mean over dimensions of the std of L2-normalised embeddings, times ``sqrt(D)`` (1 = well spread)."""
    z = F.normalize(embeddings.detach().float(), dim=-1)
    return float(z.std(dim=0).mean() * math.sqrt(z.shape[-1]))


def effective_rank(embeddings: Tensor, eps: float = 1e-12) -> float:
    """``exp(H(p))`` with ``p`` the singular values of ``embeddings`` divided by their sum (RankMe)."""
    singular = torch.linalg.svdvals(embeddings.detach().double())
    p = singular / (singular.sum() + eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))


@dataclass
class CollapseMonitor:
    """Watches the diagnostics and warns once when they fall towards collapse (and once on recovery).

    Attributes:
        std_threshold: Warn when :func:`normalized_std` falls below this (uniform spread is 1).
        rank_fraction: Warn when the effective rank falls below this fraction of ``min(B, D)``.
        grace_steps: No warning before this step: a randomly initialised network (a ViT's class token
            above all) often starts with poorly spread features, which is not a collapse.
        collapsing: Whether the last check was below a threshold.
    """

    std_threshold: float = 0.1
    rank_fraction: float = 0.02
    grace_steps: int = 0
    collapsing: bool = False

    def check(self, embeddings: Tensor, step: int) -> dict[str, float]:
        """Diagnostics of one batch; logs a warning when they cross into collapse."""
        std, rank = normalized_std(embeddings), effective_rank(embeddings)
        rank_floor = max(1.5, self.rank_fraction * min(embeddings.shape))
        low = step > self.grace_steps and (std < self.std_threshold or rank < rank_floor)
        if low and not self.collapsing:
            log.warning(
                "step %d: embeddings are collapsing: normalised std %.3f (1 = spread, warn below %.2f), "
                "effective rank %.2f of at most %d (warn below %.1f); check the learning rate, the "
                "augmentations, the EMA momentum or the temperature", step, std, self.std_threshold, rank,
                min(embeddings.shape), rank_floor)
        elif self.collapsing and not low:
            log.warning("step %d: embeddings recovered: normalised std %.3f, effective rank %.2f", step, std, rank)
        self.collapsing = low
        return {"emb_std": std, "emb_rank": rank}
