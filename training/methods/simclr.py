"""SimCLR: A Simple Framework for Contrastive Learning of Visual Representations (Chen et al. 2020).

Two augmented views of every image go through the encoder ``f`` and a projection MLP ``g``; NT-Xent
pulls each view's projection towards its twin's and away from the other ``2N − 2`` views (§2.1).
The representation kept is ``h = f(x)``, before the projection (§4.2).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from training.methods import METHODS
from training.methods.common import SSLMethod, embeddings_of
from training.parts.heads import SimCLRProjectionHead
from training.parts.losses import NTXentLoss
from training.parts.views import BatchViews, simclr_views
from zoo.encoders import ImageEncoder


@METHODS.register("simclr")
class SimCLR(SSLMethod):
    """SimCLR around any backbone.

    Args:
        encoder: The encoder to train.
        temperature: NT-Xent τ (0.5, the paper's CIFAR-10 value, App. B.9; 0.1 on ImageNet).
        hidden_dim: Projection MLP width; the backbone's width if None, as in the paper (§2.1).
        out_dim: Projection output width, 128 (§2.1).
        num_layers: Projection MLP depth, 2 (SimCLR v1; v2 uses 3).
        views: Overrides applied to both views' :class:`~training.parts.views.ViewConfig`.
    """

    min_batch_size = 2  # each image needs at least one other image as a negative

    def __init__(self, encoder: ImageEncoder, temperature: float = 0.5, hidden_dim: int | None = None,
                 out_dim: int = 128, num_layers: int = 2, views: dict[str, Any] | None = None) -> None:
        super().__init__(encoder, "simclr")
        self.criterion = NTXentLoss(temperature=temperature)
        self.projection_head = SimCLRProjectionHead(self.feature_dim, hidden_dim or self.feature_dim, out_dim,
                                                    num_layers)
        self.views = BatchViews(simclr_views(self.image_size, **(views or {})), encoder.config.preprocess)

    def training_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Two views → one backbone pass over ``2B`` images → projections → NT-Xent."""
        images = self.check_batch(batch)
        x0, x1 = self.views(images, self.generator)
        h = self.features(torch.cat([x0, x1]))
        z0, z1 = self.projection_head(h).chunk(2)
        loss = self.criterion(z0, z1)
        return {"loss": loss, "embeddings": embeddings_of(h[: len(images)])}
