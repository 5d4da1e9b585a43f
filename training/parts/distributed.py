"""Cross-rank helpers for losses that use negatives, safe to call when torch.distributed is not running.

Contrastive losses (SimCLR's NT-Xent, MoCo v3's InfoNCE, CLIP) get better with more negatives, so under
DDP each rank compares its embeddings with every rank's. ``torch.distributed.all_gather`` returns
tensors without a gradient; :func:`gather` wraps it in an autograd function whose backward sums the
gradient each rank computed for a slice and hands every rank the gradient for its own slice. It uses
``all_reduce`` rather than ``reduce_scatter`` because the gloo backend (CPU tests) lacks the latter.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """Whether a process group is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward returns this rank's share of the summed gradient."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        out = [torch.zeros_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(out, tensor.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> Tensor:  # type: ignore[override]
        stacked = torch.stack(grads)
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked[dist.get_rank()]


def gather(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, rank order, keeping gradients.

    Without a process group (or with one rank) it returns ``tensor`` itself.
    """
    if not is_distributed():
        return tensor
    return torch.cat(_GatherWithGrad.apply(tensor), dim=0)


def all_reduce_mean(tensor: Tensor) -> Tensor:
    """The mean of ``tensor`` over all ranks, as a detached copy: the input is never reduced in place.

    One contract for every caller (DINO's centre, the trainer's logged scalars), single process or not.
    """
    out = tensor.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out
