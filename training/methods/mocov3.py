"""MoCo v3: An Empirical Study of Training Self-Supervised Vision Transformers (Chen, Xie, He 2021).

Queries come from the online encoder, projector and predictor; keys from a momentum encoder and
projector. A symmetric InfoNCE with temperature contrasts each query with the other view's keys in the
batch (Algorithm 1): no memory queue. For ViTs the patch projection stays at its random init, which the
paper found removes training instability (§4.2).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from training.methods import METHODS
from training.methods.common import SSLMethod, embeddings_of, scalar
from training.parts.heads import MoCoV3PredictionHead, MoCoV3ProjectionHead
from training.parts.losses import MoCoV3Loss
from training.parts.momentum import cosine_schedule, deactivate_requires_grad, update_momentum
from training.parts.views import BatchViews, byol_views
from training.parts.vit import is_vit
from zoo.encoders import ImageEncoder


@METHODS.register("mocov3")
class MoCoV3(SSLMethod):
    """MoCo v3 around any backbone.

    Args:
        encoder: The encoder to train.
        temperature: τ, 0.2 (§4, ViT setting).
        proj_hidden_dim: Projector and predictor width, 4096.
        out_dim: Output width, 256.
        proj_layers: Projector depth, 3 (ViT; the paper's ResNet uses 2).
        base_momentum: m at the start, 0.99, rising to 1 on a cosine schedule (§4).
        freeze_patch_embed: Keep a ViT's patch projection random and frozen (§4.2).
        views: Overrides applied to both views (BYOL's asymmetric pair, as the paper uses).
    """

    min_batch_size = 2  # each query needs at least one negative key

    def __init__(self, encoder: ImageEncoder, temperature: float = 0.2, proj_hidden_dim: int = 4096,
                 out_dim: int = 256, proj_layers: int = 3, base_momentum: float = 0.99,
                 freeze_patch_embed: bool = True, views: dict[str, Any] | None = None) -> None:
        super().__init__(encoder, "mocov3")
        if not 0.0 <= base_momentum <= 1.0:
            raise ValueError(f"base_momentum must be in [0, 1], got {base_momentum}")
        self.base_momentum = base_momentum
        self.momentum = base_momentum
        if freeze_patch_embed and is_vit(self.backbone):
            self.backbone.patch_embed.requires_grad_(False)
        self.projection_head = MoCoV3ProjectionHead(self.feature_dim, proj_hidden_dim, out_dim, proj_layers)
        self.prediction_head = MoCoV3PredictionHead(out_dim, proj_hidden_dim, out_dim)
        self.momentum_backbone = deactivate_requires_grad(copy.deepcopy(self.backbone))
        self.momentum_projection_head = deactivate_requires_grad(copy.deepcopy(self.projection_head))
        self.criterion = MoCoV3Loss(temperature=temperature)
        self.views = BatchViews(byol_views(self.image_size, **(views or {})), encoder.config.preprocess)

    def training_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``loss = ctr(q1, k2) + ctr(q2, k1)`` (Algorithm 1)."""
        images = self.check_batch(batch)
        x1, x2 = self.views(images, self.generator)
        both = torch.cat([x1, x2])
        h = self.features(both)
        q1, q2 = self.prediction_head(self.projection_head(h)).chunk(2)
        with torch.no_grad():  # keys: momentum branch, no gradient
            k1, k2 = self.momentum_projection_head(self.momentum_backbone(both)).chunk(2)
        loss = self.criterion(q1, k2) + self.criterion(q2, k1)
        return {"loss": loss, "embeddings": embeddings_of(h[: len(images)]),
                "momentum": scalar(self.momentum, loss)}

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Momentum update of encoder and projector, m on a cosine schedule to 1 (§4)."""
        self.momentum = cosine_schedule(step, total_steps, self.base_momentum, 1.0)
        update_momentum(self.backbone, self.momentum_backbone, self.momentum)
        update_momentum(self.projection_head, self.momentum_projection_head, self.momentum)
