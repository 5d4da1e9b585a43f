"""DINO: Emerging Properties in Self-Supervised Vision Transformers (Caron et al. 2021).

Self-distillation without labels: a student network matches the output distribution of a teacher, an
exponential moving average of the student, across views (§3.1, Algorithm 1). Multi-crop gives the
student two global crops and several small local crops while the teacher sees the global crops only,
encouraging local-to-global correspondence. The teacher's outputs are centred and sharpened to avoid
collapse; its temperature warms up linearly, its momentum follows a cosine schedule to 1.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from training.methods import METHODS
from training.methods.common import SSLMethod, embeddings_of, scalar
from training.parts.heads import DINOProjectionHead
from training.parts.losses import DINOLoss
from training.parts.momentum import cosine_schedule, deactivate_requires_grad, update_momentum
from training.parts.views import BatchViews, dino_views
from training.parts.vit import features_any_size, is_vit, patch_size
from zoo.encoders import ImageEncoder


def default_local_size(global_size: int, multiple: int) -> int:
    """96/224 of the global size (the paper's local crops), rounded to a multiple of the patch size."""
    return max(multiple, round(global_size * 96 / 224 / multiple) * multiple)


@METHODS.register("dino")
class DINO(SSLMethod):
    """DINO around any backbone (ViT or CNN).

    Args:
        encoder: The encoder to train (the student's backbone).
        out_dim: Prototypes K. 65,536 in the paper; 4,096 here, within its ablation (App. D) and sized
            for a CPU batch of ``(2 + n_local) · B`` rows.
        hidden_dim: Head MLP width, 2048 (§3.1).
        bottleneck_dim: Head bottleneck, 256.
        use_bn_in_head: BatchNorm in the head MLP (the paper uses it for ResNets, not ViTs).
        norm_last_layer: Fix the last layer's weight-norm magnitude at 1 (App. C).
        student_temp: τ_s, 0.1.
        teacher_temp: τ_t after warm-up, 0.07.
        warmup_teacher_temp: τ_t at the start, 0.04.
        teacher_temp_warmup: Fraction of training for the τ_t warm-up, 0.3 (30 epochs of 100).
        center_momentum: Centre EMA momentum, 0.9.
        base_momentum: Teacher momentum at the start, 0.996, to 1 on a cosine schedule.
        num_local_crops: Local crops per image, 6 (the paper's 2×224 + 6×96 setting).
        local_size: Local crop size; 96/224 of the global size rounded to the patch size if None.
        global_scale: Area range of global crops, (0.4, 1).
        local_scale: Area range of local crops, (0.05, 0.4).
        freeze_last_layer: Fraction of training during which the last layer gets no gradient (the paper
            freezes it for the first epoch).
        views: Overrides applied to every crop's :class:`~training.parts.views.ViewConfig`.
    """

    min_batch_size = 2  # the centre is a batch statistic

    def __init__(self, encoder: ImageEncoder, out_dim: int = 4096, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256, use_bn_in_head: bool = False, norm_last_layer: bool = True,
                 student_temp: float = 0.1, teacher_temp: float = 0.07, warmup_teacher_temp: float = 0.04,
                 teacher_temp_warmup: float = 0.3, center_momentum: float = 0.9, base_momentum: float = 0.996,
                 num_local_crops: int = 6, local_size: int | None = None,
                 global_scale: tuple[float, float] = (0.4, 1.0), local_scale: tuple[float, float] = (0.05, 0.4),
                 freeze_last_layer: float = 0.01, views: dict[str, Any] | None = None) -> None:
        super().__init__(encoder, "dino")
        if not 0.0 <= base_momentum <= 1.0:
            raise ValueError(f"base_momentum must be in [0, 1], got {base_momentum}")
        if num_local_crops < 0:
            raise ValueError(f"num_local_crops must be >= 0, got {num_local_crops}")
        self.base_momentum = self.momentum = base_momentum
        self.freeze_last_layer = freeze_last_layer
        self.head = DINOProjectionHead(self.feature_dim, hidden_dim, bottleneck_dim, out_dim,
                                       use_bn=use_bn_in_head, norm_last_layer=norm_last_layer)
        self.teacher_backbone = deactivate_requires_grad(copy.deepcopy(self.backbone))
        self.teacher_head = deactivate_requires_grad(copy.deepcopy(self.head))
        self.criterion = DINOLoss(out_dim, student_temp, teacher_temp, warmup_teacher_temp, teacher_temp_warmup,
                                  center_momentum)
        self.teacher_temp = warmup_teacher_temp if teacher_temp_warmup > 0 else teacher_temp
        self._last_layer_frozen = freeze_last_layer > 0
        for param in self.head.last_layer.parameters():
            if param.requires_grad:  # the weight-norm magnitude is frozen with norm_last_layer
                param.register_hook(self._maybe_cancel)
        size = self.image_size[0]
        multiple = patch_size(self.backbone) if is_vit(self.backbone) else 1
        local = local_size or default_local_size(size, multiple)
        self.num_local_crops = num_local_crops
        low, high = global_scale
        local_low, local_high = local_scale
        configs = dino_views(self.image_size, local, num_local_crops, (low, high), (local_low, local_high),
                             **(views or {}))
        self.views = BatchViews(configs, encoder.config.preprocess)

    def _maybe_cancel(self, grad: Tensor) -> Tensor:
        """Zero the last layer's gradient while it is frozen (DINO's ``cancel_gradients_last_layer``)."""
        return torch.zeros_like(grad) if self._last_layer_frozen else grad

    @staticmethod
    def _forward(backbone: nn.Module, head: nn.Module, crops: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        """Run crops grouped by resolution (one pass per size); returns per-crop head outputs and features."""
        outputs: list[Tensor] = []
        features: list[Tensor] = []
        start = 0
        while start < len(crops):
            end = start
            while end < len(crops) and crops[end].shape == crops[start].shape:
                end += 1
            h = features_any_size(backbone, torch.cat(crops[start:end]))
            features.append(h)
            outputs.extend(head(h).chunk(end - start))
            start = end
        return outputs, features[0]

    def training_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Teacher on the 2 global crops, student on all crops, cross-entropy over pairs of different views."""
        images = self.check_batch(batch)
        crops = self.views(images, self.generator)
        with torch.no_grad():
            teacher_out, _ = self._forward(self.teacher_backbone, self.teacher_head, crops[:2])
        student_out, global_features = self._forward(self.backbone, self.head, crops)
        loss = self.criterion(teacher_out, student_out, teacher_temp=self.teacher_temp)
        return {"loss": loss, "embeddings": embeddings_of(global_features[: len(images)]),
                "teacher_temp": scalar(self.teacher_temp, loss), "momentum": scalar(self.momentum, loss)}

    def _set_schedules(self, step: int, total_steps: int) -> None:
        """Momentum, τ_t and the last layer's freeze as they stand after ``step`` (0-based) finished."""
        self.momentum = cosine_schedule(step, total_steps, self.base_momentum, 1.0)
        self.teacher_temp = self.criterion.teacher_temperature(step, total_steps)
        self._last_layer_frozen = step < self.freeze_last_layer * total_steps

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Teacher EMA (cosine momentum), τ_t warm-up, and the end of the last layer's freeze."""
        self._set_schedules(step, total_steps)
        update_momentum(self.backbone, self.teacher_backbone, self.momentum)
        update_momentum(self.head, self.teacher_head, self.momentum)

    def on_resume(self, step: int, total_steps: int) -> None:
        """The schedule values the last finished step left (they are functions of the step, not state)."""
        if step > 0:
            self._set_schedules(step - 1, total_steps)
