"""I-JEPA: Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture.

Assran et al. 2023.
A context encoder sees one large block of patches; a narrow predictor, given the context encoding and
positional mask tokens, predicts the representations of several target blocks; the targets come from
an EMA target encoder that saw the whole image, layer-normalised (§3). No pixels are reconstructed and
no hand-crafted view augmentations are needed beyond a random resized crop.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from training.methods import METHODS
from training.methods.common import SSLMethod, accept_keys_of_an_alias, embeddings_of, scalar
from training.parts.losses import IJEPALoss
from training.parts.masking import MultiBlockMaskGenerator
from training.parts.momentum import deactivate_requires_grad, linear_schedule, update_momentum
from training.parts.views import BatchViews, ijepa_views
from training.parts.vit import encode_tokens, gather_tokens, grid_size, patch_tokens, sincos_pos_embed
from zoo.encoders import ImageEncoder


class IJEPAPredictor(nn.Module):
    """The narrow ViT predictor (§3, App. A): context tokens + mask tokens at the target positions."""

    pos_embed: Tensor

    def __init__(self, encoder_dim: int, grid: tuple[int, int], dim: int, depth: int, num_heads: int,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_pos_embed(dim, grid), persistent=False)
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, encoder_dim)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, context: Tensor, context_index: Tensor, target_index: list[Tensor]) -> list[Tensor]:
        """``[B, Nc, D]`` context encoding → one ``[B, Nt, D]`` prediction per target block.

        All target blocks run as one batch: the context is repeated once per block (as the official code).
        """
        batch, blocks = context.shape[0], len(target_index)
        pos = self.pos_embed.expand(batch, -1, -1)
        x = self.embed(context) + gather_tokens(pos, context_index)
        x = x.repeat(blocks, 1, 1)
        targets = torch.cat(target_index)
        queries = self.mask_token.to(x.dtype) + gather_tokens(pos.repeat(blocks, 1, 1), targets)
        x = self.norm(self.blocks(torch.cat([x, queries], dim=1)))
        return list(self.proj(x[:, context.shape[1] :]).chunk(blocks))


def _pair(values: tuple[float, float] | list[float]) -> tuple[float, float]:
    """A YAML list or a tuple as a ``(low, high)`` pair."""
    low, high = values
    return float(low), float(high)


@METHODS.register("ijepa")
class IJEPA(SSLMethod):
    """I-JEPA on a timm ViT backbone.

    Args:
        encoder: The context encoder to train; must be a ViT. Build it with ``pooling="mean"``: the
            paper evaluates average-pooled patch tokens, and the class token gets no target.
        num_targets: Target blocks per image, 4 (§3).
        target_scale: Area of each target block, (0.15, 0.2).
        target_aspect: Aspect ratio of target blocks, (0.75, 1.5).
        context_scale: Area of the context block before targets are removed, (0.85, 1.0).
        predictor_dim: Predictor width. 384 in the paper (ViT-H); 64 here for CPU-sized encoders.
        predictor_depth: Predictor blocks. 12 in the paper; 4 here.
        predictor_heads: Predictor attention heads.
        mlp_ratio: Predictor MLP ratio, 4.
        base_momentum: Target-encoder EMA at the start, 0.996, rising linearly to 1 (App. A).
        loss: ``smooth_l1`` (official code) or ``l2`` (eq. 1).
        views: Overrides for the view (random resized crop from 30%, App. A).
    """

    min_batch_size = 1

    def __init__(self, encoder: ImageEncoder, num_targets: int = 4, target_scale: tuple[float, float] = (0.15, 0.2),
                 target_aspect: tuple[float, float] = (0.75, 1.5), context_scale: tuple[float, float] = (0.85, 1.0),
                 predictor_dim: int = 64, predictor_depth: int = 4, predictor_heads: int = 4, mlp_ratio: float = 4.0,
                 base_momentum: float = 0.996, loss: str = "smooth_l1",
                 views: dict[str, Any] | None = None) -> None:
        super().__init__(encoder, "ijepa")
        vit = self.vit  # a ConfigError here when the backbone is not a ViT
        accept_keys_of_an_alias(self, "vit")
        if encoder.config.pooling == "cls":
            warnings.warn("I-JEPA never trains the class token towards a target; its embeddings will be poor. "
                          "Build the encoder with pooling='mean' (the paper average-pools patch tokens).",
                          stacklevel=2)
        if not 0.0 <= base_momentum <= 1.0:
            raise ValueError(f"base_momentum must be in [0, 1], got {base_momentum}")
        self.base_momentum = self.momentum = base_momentum
        grid = grid_size(vit)
        self.masks = MultiBlockMaskGenerator(grid, num_targets, _pair(target_scale), _pair(target_aspect),
                                             _pair(context_scale))
        self.predictor = IJEPAPredictor(vit.embed_dim, grid, predictor_dim, predictor_depth, predictor_heads,
                                        mlp_ratio)
        self.target_encoder = deactivate_requires_grad(copy.deepcopy(vit))
        self.criterion = IJEPALoss(kind=loss)
        self.views = BatchViews(ijepa_views(self.image_size, **(views or {})), encoder.config.preprocess)

    def training_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Targets from the EMA encoder on the full image; predictions from the context block (§3)."""
        images = self.check_batch(batch)
        (pixels,) = self.views(images, self.generator)
        masks = self.masks(len(images), pixels.device, self.generator)
        prefix = self.vit.num_prefix_tokens
        with torch.no_grad():
            full = self.target_encoder.forward_features(pixels)[:, prefix:]  # type: ignore[operator]
            full = F.layer_norm(full, (full.shape[-1],))
            targets = [gather_tokens(full, index) for index in masks.targets]
        latent = encode_tokens(self.vit, gather_tokens(patch_tokens(self.vit, pixels), masks.context))
        predictions = self.predictor(latent[:, prefix:], masks.context, masks.targets)
        loss = self.criterion(predictions, targets)
        return {"loss": loss, "embeddings": embeddings_of(self.vit.forward_head(latent)),
                "context_tokens": scalar(masks.context.shape[1], loss),
                "momentum": scalar(self.momentum, loss)}

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Target-encoder EMA with momentum rising linearly to 1."""
        self.momentum = linear_schedule(step, total_steps, self.base_momentum, 1.0)
        update_momentum(self.vit, self.target_encoder, self.momentum)
