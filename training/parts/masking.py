"""Token masks: MAE's per-sample random masking and I-JEPA's multi-block masks.

Both return index tensors so a method can gather exactly the tokens an encoder should see; nothing
masked is ever computed on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class RandomMask:
    """MAE's mask for a batch.

    Attributes:
        keep: ``[B, K]`` indices of the visible patches (sorted by a random score, not by position).
        restore: ``[B, N]`` inverse permutation: ``cat(visible, masked)`` gathered with it is back in order.
        mask: ``[B, N]`` float, 1 where the patch is hidden from the encoder.
    """

    keep: Tensor
    restore: Tensor
    mask: Tensor


def random_token_mask(batch: int, num_tokens: int, mask_ratio: float = 0.75, device: torch.device | None = None,
                      generator: torch.Generator | None = None) -> RandomMask:
    """Hide ``round(N·ratio)`` patches per sample, chosen uniformly (He et al. 2022, §3, 75% by default).

    Per-sample noise is argsorted, as in the paper's code, so every sample keeps the same number of
    patches and the batch stays one dense tensor.
    """
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    if num_tokens < 2:
        raise ValueError(f"need at least 2 tokens to mask some and keep some, got {num_tokens}")
    n_keep = min(max(1, round(num_tokens * (1.0 - mask_ratio))), num_tokens - 1)
    noise = torch.rand(batch, num_tokens, generator=generator)
    shuffle = noise.argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    mask = torch.ones(batch, num_tokens)
    mask[:, :n_keep] = 0
    mask = torch.gather(mask, 1, restore)
    return RandomMask(shuffle[:, :n_keep].to(device), restore.to(device), mask.to(device))


@dataclass(frozen=True)
class BlockMasks:
    """I-JEPA masks for a batch: one context block and several target blocks per sample.

    Attributes:
        context: ``[B, Nc]`` indices of context patches (the context block minus every target block).
        targets: One ``[B, Nt]`` index tensor per target block.
    """

    context: Tensor
    targets: list[Tensor]


class MultiBlockMaskGenerator:
    """I-JEPA's multi-block masking (Assran et al. 2023, §3 and App. C), collator-style.

    Block sizes are drawn once per batch (so every sample's target blocks have one size), positions per
    sample. Target blocks cover 15–20% of the image each with aspect ratio 0.75–1.5; the context block
    covers 85–100% with aspect 1 and loses every patch that any target block covers, so the task is not
    trivial. If too few context patches remain, positions are redrawn. Index lists are truncated to the
    shortest in the batch so they stack.

    Args:
        grid: Patch grid ``(rows, cols)``.
        num_targets: Target blocks per image (4).
        target_scale: Area fraction of each target block.
        target_aspect: Aspect-ratio range of target blocks.
        context_scale: Area fraction of the context block before targets are removed.
        context_aspect: Aspect-ratio range of the context block.
        min_keep: Fewest patches a block (and the context after removal) may have; 10 of 196 in the
            paper's code, scaled here to the grid (at least 2).
    """

    def __init__(self, grid: tuple[int, int], num_targets: int = 4, target_scale: tuple[float, float] = (0.15, 0.2),
                 target_aspect: tuple[float, float] = (0.75, 1.5), context_scale: tuple[float, float] = (0.85, 1.0),
                 context_aspect: tuple[float, float] = (1.0, 1.0), min_keep: int | None = None) -> None:
        for name, (low, high) in (("target_scale", target_scale), ("context_scale", context_scale),
                                  ("target_aspect", target_aspect), ("context_aspect", context_aspect)):
            if not 0.0 < low <= high or (name.endswith("scale") and high > 1.0):
                raise ValueError(f"{name} must be an increasing positive range (scales ≤ 1), got {(low, high)}")
        if num_targets < 1:
            raise ValueError(f"num_targets must be >= 1, got {num_targets}")
        self.grid = (int(grid[0]), int(grid[1]))
        self.num_targets = num_targets
        self.target_scale, self.target_aspect = target_scale, target_aspect
        self.context_scale, self.context_aspect = context_scale, context_aspect
        total = self.grid[0] * self.grid[1]
        self.min_keep = min_keep if min_keep is not None else max(2, round(10 * total / 196))

    def _block_size(self, scale: tuple[float, float], aspect: tuple[float, float],
                    generator: torch.Generator | None) -> tuple[int, int]:
        rows, cols = self.grid
        u = torch.rand(2, generator=generator).tolist()
        area = rows * cols * (scale[0] + u[0] * (scale[1] - scale[0]))
        ratio = math.exp(math.log(aspect[0]) + u[1] * (math.log(aspect[1]) - math.log(aspect[0])))
        h = max(1, min(rows, round(math.sqrt(area * ratio))))
        w = max(1, min(cols, round(math.sqrt(area / ratio))))
        return h, w

    def _place(self, size: tuple[int, int], generator: torch.Generator | None) -> Tensor:
        rows, cols = self.grid
        h, w = size
        top = int(torch.randint(0, rows - h + 1, (1,), generator=generator))
        left = int(torch.randint(0, cols - w + 1, (1,), generator=generator))
        block = torch.zeros(rows, cols, dtype=torch.bool)
        block[top : top + h, left : left + w] = True
        return block

    def __call__(self, batch: int, device: torch.device | None = None,
                 generator: torch.Generator | None = None) -> BlockMasks:
        """Masks for ``batch`` images."""
        target_size = self._block_size(self.target_scale, self.target_aspect, generator)
        context_size = self._block_size(self.context_scale, self.context_aspect, generator)
        contexts: list[Tensor] = []
        targets: list[list[Tensor]] = [[] for _ in range(self.num_targets)]
        for _ in range(batch):
            for attempt in range(20):
                blocks = [self._place(target_size, generator) for _ in range(self.num_targets)]
                covered = torch.stack(blocks).any(dim=0)
                context = self._place(context_size, generator) & ~covered
                if int(context.sum()) >= self.min_keep or attempt == 19:
                    break
            if int(context.sum()) == 0:  # a degenerate grid: keep one uncovered (or any) patch
                free = (~covered).flatten().nonzero()
                context.view(-1)[int(free[0]) if len(free) else 0] = True
            contexts.append(context.flatten().nonzero().squeeze(1))
            for i, block in enumerate(blocks):
                targets[i].append(block.flatten().nonzero().squeeze(1))
        n_context = min(len(c) for c in contexts)
        return BlockMasks(
            context=torch.stack([c[:n_context] for c in contexts]).to(device),
            targets=[torch.stack(t).to(device) for t in targets],
        )
