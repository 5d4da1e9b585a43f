"""CLIP's symmetric InfoNCE over image–text pairs (Radford et al. 2021, Fig. 3 pseudocode).

``logits = scale · I Tᵀ`` for unit image and text embeddings; the loss is the mean of the
cross-entropy over rows (image → text) and over columns (text → image), the positive of image ``i``
being text ``i``. Under DDP each rank scores its own images and texts against every rank's (gathered
with gradient), so negatives come from the global batch, and the mean of the ranks' losses equals the
single-process loss over the concatenated batch (open_clip's ``local_loss``).

``keys`` (optional) marks pairs that say the same thing — two skin-tone variants of one emoji with one
caption, two images of one concept: every image–text pair with equal keys is a positive and the
target spreads evenly over them, instead of pushing identical captions apart (UniCL, Yang et al. 2022).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.parts import distributed
from training.parts.losses import LOSSES


def soft_targets(row_keys: Tensor, col_keys: Tensor) -> Tensor:
    """``[R, C]`` target distribution: uniform over the columns whose key equals the row's."""
    same = (row_keys[:, None] == col_keys[None, :]).float()
    return same / same.sum(dim=1, keepdim=True).clamp(min=1.0)


@LOSSES.register("clip")
class ClipLoss(nn.Module):
    """Symmetric cross-entropy between image and text embeddings, negatives from every rank.

    Args:
        gather_distributed: Use every rank's embeddings as negatives when torch.distributed runs.
        label_smoothing: Passed to the cross-entropy (0 in the paper).
    """

    def __init__(self, gather_distributed: bool = True, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.gather_distributed = gather_distributed
        self.label_smoothing = float(label_smoothing)

    def forward(self, image: Tensor, text: Tensor, scale: Tensor | float, keys: Tensor | None = None) -> Tensor:
        """Loss for this rank's ``[B, D]`` unit image and text embeddings.

        Args:
            image: L2-normalised image embeddings, row ``i`` paired with ``text[i]``.
            text: L2-normalised text embeddings.
            scale: ``exp(logit_scale)`` (already clamped by the model), a scalar.
            keys: Optional ``int64 [B]``; pairs with equal keys count as positives of each other.
        """
        if image.ndim != 2 or image.shape != text.shape:
            raise ValueError(f"expected two [B, D] tensors of one shape, got {tuple(image.shape)}, {tuple(text.shape)}")
        if keys is not None and keys.shape != image.shape[:1]:
            raise ValueError(f"keys must be [B] = [{image.shape[0]}], got {tuple(keys.shape)}")
        image, text = image.float(), text.float()
        batch = image.shape[0]
        if self.gather_distributed and distributed.is_distributed():
            all_image, all_text = distributed.gather(image), distributed.gather(text)
            offset = distributed.rank() * batch
            all_keys = distributed.gather(keys) if keys is not None else None
        else:
            all_image, all_text, offset, all_keys = image, text, 0, keys
        if all_image.shape[0] < 2:
            raise ValueError("the CLIP loss needs at least 2 pairs across all ranks (one has no negatives)")
        logits_image = scale * image @ all_text.T  # [B, T]: this rank's images against every text
        logits_text = scale * text @ all_image.T  # [B, T]: this rank's texts against every image
        if all_keys is None:
            target: Tensor = torch.arange(batch, device=image.device) + offset
            return 0.5 * (F.cross_entropy(logits_image, target, label_smoothing=self.label_smoothing)
                          + F.cross_entropy(logits_text, target, label_smoothing=self.label_smoothing))
        local_keys = all_keys[offset : offset + batch]
        soft = soft_targets(local_keys, all_keys)
        return 0.5 * (F.cross_entropy(logits_image, soft, label_smoothing=self.label_smoothing)
                      + F.cross_entropy(logits_text, soft, label_smoothing=self.label_smoothing))
