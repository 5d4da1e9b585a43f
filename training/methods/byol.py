"""BYOL: Bootstrap Your Own Latent (Grill et al. 2020).

An online network (encoder, projector, predictor) predicts a target network's projection of another
view; the target (encoder, projector) is an exponential moving average of the online one, with a
stop-gradient, and its momentum rises from τ_base to 1 on a cosine schedule (§3.1). The loss is the
normalised MSE, symmetrised over the two views (eq. 2).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from training.methods import METHODS
from training.methods.common import SSLMethod, embeddings_of, scalar
from training.parts.heads import BYOLPredictionHead, BYOLProjectionHead
from training.parts.losses import NegativeCosineLoss
from training.parts.momentum import cosine_schedule, deactivate_requires_grad, update_momentum
from training.parts.views import BatchViews, byol_views
from zoo.encoders import ImageEncoder


@METHODS.register("byol")
class BYOL(SSLMethod):
    """BYOL around any backbone.

    Args:
        encoder: The encoder to train.
        proj_hidden_dim: Projector and predictor width, 4096 (§3.3).
        out_dim: Projection width, 256 (§3.3).
        base_momentum: τ_base. 0.996 in the paper for 1,000 epochs; 0.99 here, its value for shorter
            runs (as in solo-learn and lightly's short benchmarks).
        views: Overrides applied to both views' :class:`~training.parts.views.ViewConfig`.
    """

    min_batch_size = 2  # the heads' BatchNorm needs more than one sample

    def __init__(self, encoder: ImageEncoder, proj_hidden_dim: int = 4096, out_dim: int = 256,
                 base_momentum: float = 0.99, views: dict[str, Any] | None = None) -> None:
        super().__init__(encoder, "byol")
        if not 0.0 <= base_momentum <= 1.0:
            raise ValueError(f"base_momentum must be in [0, 1], got {base_momentum}")
        self.base_momentum = base_momentum
        self.momentum = base_momentum
        self.projection_head = BYOLProjectionHead(self.feature_dim, proj_hidden_dim, out_dim)
        self.prediction_head = BYOLPredictionHead(out_dim, proj_hidden_dim, out_dim)
        self.target_backbone = deactivate_requires_grad(copy.deepcopy(self.backbone))
        self.target_projection_head = deactivate_requires_grad(copy.deepcopy(self.projection_head))
        self.criterion = NegativeCosineLoss(normalized_mse=True)
        self.views = BatchViews(byol_views(self.image_size, **(views or {})), encoder.config.preprocess)

    def training_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``L = ‖q(z1) − z'2‖² + ‖q(z2) − z'1‖²`` with normalised vectors and target ``z'`` (eq. 2)."""
        images = self.check_batch(batch)
        x1, x2 = self.views(images, self.generator)
        both = torch.cat([x1, x2])
        h = self.features(both)
        p1, p2 = self.prediction_head(self.projection_head(h)).chunk(2)
        with torch.no_grad():  # the target branch: stop-gradient
            t1, t2 = self.target_projection_head(self.target_backbone(both)).chunk(2)
        loss = self.criterion(p1, t2) + self.criterion(p2, t1)
        return {"loss": loss, "embeddings": embeddings_of(h[: len(images)]),
                "momentum": scalar(self.momentum, loss)}

    def on_step_end(self, step: int, total_steps: int) -> None:
        """``ξ ← τξ + (1 − τ)θ``, τ on BYOL's cosine schedule from τ_base to 1."""
        self.momentum = cosine_schedule(step, total_steps, self.base_momentum, 1.0)
        update_momentum(self.backbone, self.target_backbone, self.momentum)
        update_momentum(self.projection_head, self.target_projection_head, self.momentum)
