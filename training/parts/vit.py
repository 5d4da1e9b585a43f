"""Token-level access to a timm VisionTransformer, for methods that feed it only some patches.

MAE's encoder sees only the visible patches and I-JEPA's context encoder only the context block, so
they cannot call ``forward_features`` on an image: they embed patches, add position embeddings, keep
the tokens they want, prepend the class token, and run the blocks themselves, using the backbone's own
modules so the weights that reach the registry are the ones trained. DINO's small local crops use the
same path with the position embedding resampled to the crop's grid.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from zoo.errors import ConfigError


def as_vit(backbone: nn.Module, method: str) -> VisionTransformer:
    """The backbone as a timm ViT with absolute position embeddings, or a clear error naming ``method``."""
    if not isinstance(backbone, VisionTransformer):
        raise ConfigError(
            f"{method} needs a ViT backbone (masking works on patch tokens); got {type(backbone).__name__}. "
            "Use a ViT preset such as vit_nano or vit_tiny."
        )
    if backbone.pos_embed is None:
        raise ConfigError(f"{method} needs absolute position embeddings; this ViT has none")
    return backbone


def is_vit(backbone: nn.Module) -> bool:
    """Whether ``backbone`` is a timm VisionTransformer."""
    return isinstance(backbone, VisionTransformer)


def patch_size(vit: nn.Module) -> int:
    """The (square) patch size."""
    size: Any = getattr(vit.patch_embed, "patch_size")  # noqa: B009 (typed Any on purpose)
    return int(size[0] if isinstance(size, tuple | list) else size)


def grid_size(vit: VisionTransformer) -> tuple[int, int]:
    """The native patch grid ``(rows, cols)``."""
    rows, cols = vit.patch_embed.grid_size
    return int(rows), int(cols)


def _patch_pos_embed(vit: VisionTransformer, grid: tuple[int, int]) -> Tensor:
    """Position embeddings of the patch tokens for ``grid``, resampled when it is not the native grid."""
    assert vit.pos_embed is not None
    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    pos = vit.pos_embed[:, prefix:]
    if grid != grid_size(vit):
        pos = resample_abs_pos_embed(pos, new_size=list(grid), old_size=list(grid_size(vit)), num_prefix_tokens=0)
    return pos


def patch_tokens(vit: VisionTransformer, images: Tensor) -> Tensor:
    """``[B, C, H, W]`` → ``[B, N, D]`` patch embeddings plus their position embeddings (no prefix tokens).

    Images whose size is a multiple of the patch size but not the native one get a resampled position
    embedding (DINO's local crops).
    """
    p = patch_size(vit)
    height, width = images.shape[-2:]
    if height % p or width % p:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {p}")
    proj = vit.patch_embed.proj  # the conv; bypasses timm's strict size check for local crops
    x = proj(images).flatten(2).transpose(1, 2)
    x = vit.patch_embed.norm(x)
    return x + _patch_pos_embed(vit, (height // p, width // p))


def prefix_tokens(vit: VisionTransformer, batch: int) -> Tensor | None:
    """The class (and register) tokens with their position embeddings, ``[B, P, D]``, or None."""
    tokens: list[Tensor] = []
    if vit.cls_token is not None:
        tokens.append(vit.cls_token)
    reg_token = getattr(vit, "reg_token", None)
    if reg_token is not None:
        tokens.append(reg_token)
    if not tokens:
        return None
    prefix = torch.cat(tokens, dim=1)
    if not vit.no_embed_class:
        assert vit.pos_embed is not None
        prefix = prefix + vit.pos_embed[:, : vit.num_prefix_tokens]
    return prefix.expand(batch, -1, -1)


def encode_tokens(vit: VisionTransformer, tokens: Tensor) -> Tensor:
    """Prepend prefix tokens to embedded patches ``[B, M, D]`` and run ``norm_pre``, the blocks and ``norm``.

    Returns ``[B, P + M, D]``, the same layout ``forward_features`` returns.
    """
    prefix = prefix_tokens(vit, tokens.shape[0])
    x = tokens if prefix is None else torch.cat([prefix, tokens], dim=1)
    x = vit.norm_pre(vit.pos_drop(x))
    x = vit.blocks(x)
    return vit.norm(x)


def features_any_size(backbone: nn.Module, images: Tensor) -> Tensor:
    """Pooled backbone features of images of any size: the plain forward, or the resampled ViT path."""
    if isinstance(backbone, VisionTransformer) and tuple(images.shape[-2:]) != grid_pixels(backbone):
        return backbone.forward_head(encode_tokens(backbone, patch_tokens(backbone, images)))
    out: Tensor = backbone(images)
    return out


def grid_pixels(vit: VisionTransformer) -> tuple[int, int]:
    """The native input ``(height, width)`` in pixels."""
    rows, cols = grid_size(vit)
    p = patch_size(vit)
    return rows * p, cols * p


def patchify(images: Tensor, p: int) -> Tensor:
    """``[B, C, H, W]`` → ``[B, N, p·p·C]`` patches in row-major order (MAE's ``patchify``)."""
    batch, channels, height, width = images.shape
    if height % p or width % p:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {p}")
    rows, cols = height // p, width // p
    x = images.reshape(batch, channels, rows, p, cols, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(batch, rows * cols, p * p * channels)


def sincos_pos_embed(dim: int, grid: tuple[int, int]) -> Tensor:
    """Fixed 2-D sine-cosine position embeddings ``[1, rows·cols, dim]`` (MAE's decoder, I-JEPA's predictor)."""
    if dim % 4:
        raise ValueError(f"sin-cos position embeddings need a width divisible by 4, got {dim}")
    rows, cols = grid
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    ys, xs = torch.meshgrid(torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64),
                            indexing="ij")
    parts = []
    for coord in (ys.reshape(-1), xs.reshape(-1)):
        angles = coord[:, None] * omega[None, :]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1).float().unsqueeze(0)


def gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, j]]``: ``[B, N, D]`` and ``[B, M]`` → ``[B, M, D]``."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def num_tokens(grid: tuple[int, int]) -> int:
    """Number of patches in a grid."""
    return math.prod(grid)
