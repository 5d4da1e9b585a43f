"""DINO's self-distillation loss with centering and sharpening (Caron et al. 2021, §3.1, Algorithm 1).

The teacher's outputs are centred (an EMA of their batch mean is subtracted) and sharpened (a low
temperature τ_t); the student's softmax at τ_s is trained to match them with a cross-entropy, summed
over every (teacher global crop, student crop) pair of different views. Centering alone would make the
output uniform, sharpening alone one-hot: together they avoid collapse (§5.3, Fig. 7).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.parts import distributed
from training.parts.losses import LOSSES, check_temperature
from training.parts.momentum import linear_schedule


@LOSSES.register("dino")
class DINOLoss(nn.Module):
    """Cross-entropy between centred, sharpened teacher and student distributions over prototypes.

    Args:
        out_dim: Number of prototypes (the head's output width).
        student_temp: τ_s = 0.1 (§3.1).
        teacher_temp: τ_t after warm-up, 0.07 (§3.1; the official code defaults to 0.04, safer if unstable).
        warmup_teacher_temp: τ_t at the start; the paper warms up linearly from 0.04 (§3.1, App. D).
        warmup_fraction: Fraction of training over which τ_t rises (30 of 100–300 epochs in the paper).
        center_momentum: m in the centre's EMA ``c ← m·c + (1 − m)·mean(teacher)``, 0.9 (§3.1).
    """

    center: Tensor

    def __init__(self, out_dim: int, student_temp: float = 0.1, teacher_temp: float = 0.07,
                 warmup_teacher_temp: float = 0.04, warmup_fraction: float = 0.3,
                 center_momentum: float = 0.9) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"out_dim must be positive, got {out_dim}")
        self.student_temp = check_temperature("student_temp", student_temp)
        self.teacher_temp = check_temperature("teacher_temp", teacher_temp)
        self.warmup_teacher_temp = check_temperature("warmup_teacher_temp", warmup_teacher_temp)
        if not 0.0 <= warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1], got {warmup_fraction}")
        if not 0.0 <= center_momentum < 1.0:
            raise ValueError(f"center_momentum must be in [0, 1), got {center_momentum}")
        self.warmup_fraction = warmup_fraction
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_temperature(self, step: int, total_steps: int) -> float:
        """τ_t at ``step``: linear warm-up from ``warmup_teacher_temp``, then ``teacher_temp``."""
        warmup_steps = round(self.warmup_fraction * total_steps)
        if warmup_steps < 1 or step >= warmup_steps:
            return self.teacher_temp
        return linear_schedule(step, warmup_steps, self.warmup_teacher_temp, self.teacher_temp)

    def forward(self, teacher_out: Sequence[Tensor], student_out: Sequence[Tensor],
                teacher_temp: float | None = None) -> Tensor:
        """Loss over all pairs of different crops; updates the centre from ``teacher_out`` afterwards.

        Args:
            teacher_out: One ``[B, K]`` tensor per global crop (teacher logits).
            student_out: One ``[B, K]`` tensor per crop, global crops first, same order as the teacher's.
            teacher_temp: τ_t for this step (``teacher_temperature``); ``teacher_temp`` if None.
        """
        if not teacher_out or len(student_out) < 2:
            raise ValueError("DINO needs at least one teacher crop and two student crops")
        temp = check_temperature("teacher_temp", self.teacher_temp if teacher_temp is None else teacher_temp)
        teacher_probs = [F.softmax((t.float().detach() - self.center) / temp, dim=-1) for t in teacher_out]
        student_logp = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_out]
        total, terms = student_logp[0].new_zeros(()), 0
        for iq, probs in enumerate(teacher_probs):
            for iv, logp in enumerate(student_logp):
                if iv == iq:
                    continue  # the same view seen by both networks is skipped (Algorithm 1)
                total = total + torch.sum(-probs * logp, dim=-1).mean()
                terms += 1
        self.update_center(teacher_out)
        return total / terms

    @torch.no_grad()
    def update_center(self, teacher_out: Sequence[Tensor]) -> None:
        """``c ← m·c + (1 − m)·mean`` of the teacher logits over the global batch (all ranks)."""
        batch_center = torch.cat([t.detach().float() for t in teacher_out]).mean(dim=0, keepdim=True)
        batch_center = distributed.all_reduce_mean(batch_center)
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1.0 - self.center_momentum)
