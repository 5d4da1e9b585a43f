"""MAE: Masked Autoencoders Are Scalable Vision Learners (He et al. 2022).

75% of the patches are hidden at random; the encoder (the ViT being trained) sees only the visible
ones, plus its class token. A light decoder gets the encoded visible tokens and a shared, learned mask
token at every hidden position, adds fixed sin-cos position embeddings, and predicts the pixels of each
patch. The loss is the MSE on the hidden patches only, against per-patch normalised pixels (§3).
As in the paper's code: ``forward_encoder``, ``forward_decoder``, ``forward_loss``.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from training.methods import METHODS
from training.methods.common import SSLMethod, accept_keys_of_an_alias, embeddings_of
from training.parts.losses import MAELoss
from training.parts.masking import RandomMask, random_token_mask
from training.parts.views import BatchViews, mae_views
from training.parts.vit import (
    encode_tokens,
    gather_tokens,
    grid_size,
    patch_size,
    patch_tokens,
    patchify,
    sincos_pos_embed,
)
from zoo.encoders import ImageEncoder


class MAEDecoder(nn.Module):
    """The light decoder (§3): embed to ``dim``, insert mask tokens, blocks, predict ``p·p·C`` pixels."""

    pos_embed: Tensor

    def __init__(self, encoder_dim: int, grid: tuple[int, int], patch_pixels: int, dim: int, depth: int,
                 num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_pos_embed(dim, grid), persistent=False)
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, patch_pixels)
        self.apply(_init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: Tensor, mask: RandomMask, num_prefix: int) -> Tensor:
        """Encoded ``[B, P + K, D]`` (prefix tokens first) → ``[B, N, p·p·C]`` predictions in patch order."""
        x = self.embed(latent)
        prefix, visible = x[:, :num_prefix], x[:, num_prefix:]
        hidden = mask.restore.shape[1] - visible.shape[1]
        tokens = torch.cat([visible, self.mask_token.expand(x.shape[0], hidden, -1).to(x.dtype)], dim=1)
        tokens = gather_tokens(tokens, mask.restore) + self.pos_embed  # unshuffle, then positions
        x = self.norm(self.blocks(torch.cat([prefix, tokens], dim=1)))
        return self.pred(x[:, num_prefix:])


def _init_weights(module: nn.Module) -> None:
    # MAE initialises linear layers with xavier_uniform and LayerNorms to identity.
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


@METHODS.register("mae")
class MAE(SSLMethod):
    """MAE on a timm ViT backbone.

    Args:
        encoder: The encoder to train; must be a ViT.
        mask_ratio: Fraction of patches hidden, 0.75 (§4, Fig. 5).
        norm_pix: Regress per-patch normalised pixels (Table 1d).
        decoder_dim: Decoder width. 512 in the paper for ViT-L; 128 here for CPU-sized encoders.
        decoder_depth: Decoder blocks. 8 in the paper; 4 here (Table 1a: depth matters most for linear
            probing, less for fine-tuning).
        decoder_heads: Decoder attention heads.
        mlp_ratio: Decoder MLP ratio, 4.
        views: Overrides for the view (random resized crop from 20% and a flip, App. A.1).
    """

    min_batch_size = 1

    def __init__(self, encoder: ImageEncoder, mask_ratio: float = 0.75, norm_pix: bool = True,
                 decoder_dim: int = 128, decoder_depth: int = 4, decoder_heads: int = 4, mlp_ratio: float = 4.0,
                 views: dict[str, Any] | None = None) -> None:
        super().__init__(encoder, "mae")
        vit = self.vit  # a ConfigError here when the backbone is not a ViT
        accept_keys_of_an_alias(self, "vit")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.mask_ratio = mask_ratio
        self.patch = patch_size(vit)
        self.grid = grid_size(vit)
        channels = encoder.config.preprocess.input_size[0]
        self.decoder = MAEDecoder(vit.embed_dim, self.grid, self.patch * self.patch * channels, decoder_dim,
                                  decoder_depth, decoder_heads, mlp_ratio)
        self.criterion = MAELoss(norm_pix=norm_pix)
        self.views = BatchViews(mae_views(self.image_size, **(views or {})), encoder.config.preprocess)

    def forward_encoder(self, pixels: Tensor) -> tuple[Tensor, RandomMask]:
        """Embed patches, keep a random ``1 − mask_ratio`` of them, encode only those (plus prefix tokens)."""
        tokens = patch_tokens(self.vit, pixels)
        mask = random_token_mask(tokens.shape[0], tokens.shape[1], self.mask_ratio, tokens.device, self.generator)
        latent = encode_tokens(self.vit, gather_tokens(tokens, mask.keep))
        return latent, mask

    def forward_decoder(self, latent: Tensor, mask: RandomMask) -> Tensor:
        """Visible latents + mask tokens → pixel predictions for every patch."""
        return self.decoder(latent, mask, self.vit.num_prefix_tokens)

    def forward_loss(self, pixels: Tensor, pred: Tensor, mask: RandomMask) -> Tensor:
        """MSE on the hidden patches only (normalised per patch with ``norm_pix``)."""
        return self.criterion(pred, patchify(pixels, self.patch), mask.mask)

    def training_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """One view, masked encoding, decoding, loss. Embeddings are the encoder's pooled visible tokens."""
        images = self.check_batch(batch)
        (pixels,) = self.views(images, self.generator)
        latent, mask = self.forward_encoder(pixels)
        pred = self.forward_decoder(latent, mask)
        loss = self.forward_loss(pixels, pred, mask)
        return {"loss": loss, "embeddings": embeddings_of(self.vit.forward_head(latent))}
