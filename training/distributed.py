"""Process-group plumbing for ``torchrun``: one code path whether there is one process or many.

The trainer calls these helpers unconditionally; with a single process they are no-ops, so nothing
downstream ever branches on "am I distributed?". Gathering negatives across ranks (with gradients) is a
part of the losses: :func:`training.parts.distributed.gather`.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from training.parts.distributed import all_reduce_mean, is_distributed

__all__ = ["DistInfo", "all_reduce_mean", "any_rank", "barrier", "is_distributed", "setup", "teardown"]


@dataclass(frozen=True)
class DistInfo:
    """Rank, world size and the device this process trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process writes logs, checkpoints and the registry entry."""
        return self.rank == 0


def setup(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (gloo on CPU, nccl on GPU).

    Without ``WORLD_SIZE`` in the environment this is a single process and nothing is initialised.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=10))
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any, so all ranks stop at the same step."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    if is_distributed():
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if is_distributed():
        dist.barrier()
