"""SimSiam: Exploring Simple Siamese Representation Learning (Chen & He 2021).

Both views go through the encoder+projector ``f`` and a predictor ``h``; each view's prediction is
pulled towards the other view's projection with a stop-gradient on the projection (Algorithm 1, eq. 2).
No negatives, no momentum encoder: the stop-gradient alone prevents collapse (§4.1).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from training.methods import METHODS
from training.methods.common import SSLMethod, embeddings_of
from training.parts.heads import SimSiamPredictionHead, SimSiamProjectionHead
from training.parts.losses import NegativeCosineLoss
from training.parts.views import BatchViews, simsiam_views
from zoo.encoders import ImageEncoder


@METHODS.register("simsiam")
class SimSiam(SSLMethod):
    """SimSiam around any backbone.

    Args:
        encoder: The encoder to train.
        proj_hidden_dim: Projector width, 2048 (§4.1).
        out_dim: Projection width, 2048.
        pred_hidden_dim: Predictor bottleneck, 512 (§4.1: a bottleneck helps).
        views: Overrides applied to both views' :class:`~training.parts.views.ViewConfig`.
    """

    min_batch_size = 2  # the heads' BatchNorm needs more than one sample

    def __init__(self, encoder: ImageEncoder, proj_hidden_dim: int = 2048, out_dim: int = 2048,
                 pred_hidden_dim: int = 512, views: dict[str, Any] | None = None) -> None:
        super().__init__(encoder, "simsiam")
        self.projection_head = SimSiamProjectionHead(self.feature_dim, proj_hidden_dim, out_dim)
        self.prediction_head = SimSiamPredictionHead(out_dim, pred_hidden_dim, out_dim)
        self.criterion = NegativeCosineLoss()
        self.views = BatchViews(simsiam_views(self.image_size, **(views or {})), encoder.config.preprocess)

    def training_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """``L = ½·D(p1, stopgrad(z2)) + ½·D(p2, stopgrad(z1))`` (eq. 2)."""
        images = self.check_batch(batch)
        x1, x2 = self.views(images, self.generator)
        h = self.features(torch.cat([x1, x2]))
        z = self.projection_head(h)
        p = self.prediction_head(z)
        z1, z2 = z.detach().chunk(2)  # the stop-gradient (Algorithm 1)
        p1, p2 = p.chunk(2)
        loss = 0.5 * self.criterion(p1, z2) + 0.5 * self.criterion(p2, z1)
        # §4.1, Fig. 2: the std of l2-normalised outputs sits near 1/sqrt(d) when healthy, 0 when collapsed.
        output_std = F.normalize(z1.float(), dim=1).std(dim=0).mean()
        return {"loss": loss, "embeddings": embeddings_of(h[: len(images)]), "output_std": output_std}
