"""MAE's reconstruction loss (He et al. 2022, §3): MSE on the masked patches only.

With ``norm_pix`` each target patch is standardised by its own mean and variance, which the paper
found improves representations (Table 1d, "w/ norm").
"""

from __future__ import annotations

from torch import Tensor, nn

from training.parts.losses import LOSSES


@LOSSES.register("mae")
class MAELoss(nn.Module):
    """Mean squared error per patch, averaged over masked patches.

    Args:
        norm_pix: Standardise each target patch (§3, "normalized pixels").
        eps: Added to the per-patch variance (1e-6 as in the official code).
    """

    def __init__(self, norm_pix: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if not 0.0 < eps < 1.0:
            raise ValueError(f"eps must be in (0, 1), got {eps}")
        self.norm_pix = norm_pix
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """Loss on masked patches.

        Args:
            pred: ``[B, N, P]`` predicted pixels per patch.
            target: ``[B, N, P]`` true pixels per patch (``patchify`` of the input).
            mask: ``[B, N]``, 1 (or True) where a patch was hidden from the encoder.
        """
        if pred.shape != target.shape or mask.shape != pred.shape[:2]:
            raise ValueError(f"shapes disagree: pred {tuple(pred.shape)}, target {tuple(target.shape)}, "
                             f"mask {tuple(mask.shape)}")
        target = target.float()
        if self.norm_pix:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + self.eps) ** 0.5
        per_patch = ((pred.float() - target) ** 2).mean(dim=-1)
        mask = mask.float()
        denominator = mask.sum()
        if denominator == 0:
            raise ValueError("the mask hides no patch: MAE's loss is defined on masked patches only")
        return (per_patch * mask).sum() / denominator
