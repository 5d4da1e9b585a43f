"""The uint8 batch loader: the whole dataset as one tensor, batches sliced from a seeded permutation.

Small-image SSL is bound by per-image Python work long before the network. Keeping every image in a
single ``uint8 [N, C, H, W]`` tensor (on the training device) and slicing batches out of a per-epoch
permutation costs one ``index_select`` per batch; augmentation then runs batched inside the method.

Data order is a pure function of ``(seed, epoch, batch index)``: epoch ``e`` is shuffled by a generator
seeded with ``seed + e``, so resuming at any micro-batch needs nothing but the counter. Ranks split each
global batch into contiguous slices, the equivalent of ``DistributedSampler`` with ``drop_last``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from zoo.errors import DataError


@dataclass(frozen=True)
class BatchPosition:
    """Where a micro-batch sits in the data order."""

    epoch: int
    batch: int


class BatchLoader:
    """Seeded, shardable, resumable batches of ``{"images": uint8 [B, C, H, W], "index": int64 [B]}``.

    Args:
        images: uint8 ``[N, H, W, C]`` (a dataset's ``images``) or ``[N, C, H, W]`` tensor.
        batch_size: Images per process per micro-batch.
        seed: Seeds the per-epoch permutations.
        rank: This process's rank.
        world_size: Number of processes sharing each global batch.
        device: Where the image tensor lives (the training device: no host-to-device copy per batch).
        channels_last: Keep NHWC memory layout, which is also how datasets store images.
    """

    def __init__(self, images: np.ndarray | Tensor, batch_size: int, *, seed: int = 0, rank: int = 0,
                 world_size: int = 1, device: torch.device | str = "cpu", channels_last: bool = True) -> None:
        if isinstance(images, np.ndarray) and not images.flags.writeable:
            images = images.copy()  # cached datasets are read-only memory maps; torch wants to own writable memory
        tensor = torch.as_tensor(images)
        if tensor.dtype != torch.uint8 or tensor.ndim != 4:
            raise DataError(f"expected uint8 images [N, H, W, C], got {tensor.dtype} {tuple(tensor.shape)}")
        if isinstance(images, np.ndarray):
            tensor = tensor.permute(0, 3, 1, 2)  # NHWC storage seen as NCHW: already channels-last
        tensor = tensor.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.images = tensor.to(device)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.global_batch = batch_size * world_size
        if batch_size < 1:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        if len(self.images) < self.global_batch:
            raise DataError(
                f"the dataset has {len(self.images)} images, fewer than one global batch of {self.global_batch} "
                f"(batch size {batch_size} × {world_size} processes): use a smaller --batch-size or more images"
            )

    def __len__(self) -> int:
        """Micro-batches per epoch (the last incomplete global batch is dropped)."""
        return len(self.images) // self.global_batch

    @property
    def num_images(self) -> int:
        """Images in the dataset."""
        return len(self.images)

    def permutation(self, epoch: int) -> Tensor:
        """The shuffled order of epoch ``epoch``: the same on every rank and every run with this seed."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(len(self.images), generator=generator)

    def position(self, micro_batch: int) -> BatchPosition:
        """Epoch and batch-within-epoch of the ``micro_batch``-th micro-batch of the run."""
        return BatchPosition(micro_batch // len(self), micro_batch % len(self))

    def batches(self, start: int = 0) -> Iterator[dict[str, Tensor]]:
        """Micro-batches forever, starting at the ``start``-th of the run (resume)."""
        position = self.position(start)
        epoch, first = position.epoch, position.batch
        while True:
            order = self.permutation(epoch)
            for b in range(first, len(self)):
                lo = b * self.global_batch + self.rank * self.batch_size
                index = order[lo : lo + self.batch_size].to(self.images.device)
                yield {"images": self.images[index], "index": index}
            epoch, first = epoch + 1, 0
