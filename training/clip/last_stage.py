"""Fine-tune the last stages of a locked-features CLIP's image trunk (LP-FT), the text tower still locked.

With both towers locked, what the projections can do for emoji is bounded by what ImageNet features
say about emoji renders. Training the trunk's last stages adapts them to the domain. The frozen early
stages at full resolution are most of the trunk's cost, so their output is computed once per view
(:func:`stage_inputs`) and only the tail runs in training. The fit starts from the linear heads of
:func:`training.clip.locked_fit.fit_projections` (LP-FT: fine-tuning from a fitted head moves the pretrained
features less than from a random one, which matters for concepts never seen in training).

Batch norms stay frozen (their running statistics are ImageNet's; a few thousand renders would only
make them noisier). Only timm EfficientNet-style trunks (``conv_stem``, ``blocks``, ``conv_head``) can
be split this way; others are refused.

Measured in ``benchmarks/clip_quality.py`` (run ``tuned``, two family splits): emoji held-out zero-shot
top-5 +3.7 / +4.9 points, top-1 +0.7 / +1.2, for about ten minutes on two cores. The shipped default
does not use it (a point of top-1 is inside the seed spread).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from training.clip.captions import CaptionTable
from training.clip.locked_fit import FitResult, stack_views, train_pairs, view_batches
from training.methods.clip import image_trunk_and_head
from training.parts.losses.clip import ClipLoss
from zoo.clip import LOGIT_SCALE_MAX, ClipModel
from zoo.config import ImageTowerInfo
from zoo.errors import ConfigError

log = logging.getLogger(__name__)


def _stages(model: ClipModel, first_trained: int) -> tuple[nn.Module, nn.Sequential, nn.Sequential]:
    """(backbone, frozen stem + stages before ``first_trained``, trained stages + conv head)."""
    backbone, _ = image_trunk_and_head(model)
    if not all(hasattr(backbone, name) for name in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
        raise ConfigError(f"tail fine-tuning needs a timm EfficientNet-style trunk, not {type(backbone).__name__}")
    if not 1 <= first_trained < len(backbone.blocks):
        raise ConfigError(f"first_trained must be a stage in 1..{len(backbone.blocks) - 1}, got {first_trained}")
    frozen = nn.Sequential(backbone.conv_stem, backbone.bn1, *backbone.blocks[:first_trained])
    tail = nn.Sequential(*backbone.blocks[first_trained:], backbone.conv_head, backbone.bn2)
    return backbone, frozen, tail


def stage_inputs(model: ClipModel, images: np.ndarray, first_trained: int, views: int = 1, crop_scale: float = 0.7,
                 batch_size: int = 32, seed: int = 0) -> Tensor:
    """bf16 ``[V, N, C, H, W]``: the input of stage ``first_trained`` for every view (view 0 uncropped).

    Views are mild random crops, no flips: a mirrored "leftwards" emoji is a "rightwards" one.
    """
    backbone, frozen, _ = _stages(model, first_trained)
    backbone.eval().to(memory_format=torch.channels_last)  # outside inference mode: the weights stay trainable
    with torch.inference_mode():
        return stack_views(((v, frozen(pixels).to(torch.bfloat16))
                            for v, pixels in view_batches(model, images, views, crop_scale, batch_size, seed)), views)


def record_tuned(model: ClipModel, first_trained: int, steps: int) -> None:
    """Say in the config which image stages trained, so the model card does not call the tower locked."""
    trainable = (f"stages {first_trained}.. and conv head fine-tuned {steps} steps on frozen earlier "
                 "stages (batch norms frozen)")
    info = model.config.image_tower or ImageTowerInfo(init="random", license=model.config.license)
    model.config = model.config.replace(image_tower=dataclasses.replace(info, trainable=trainable))
    model.visual.config = model.config


def _pooled(tail: nn.Module, backbone: Any, inputs: Tensor) -> Tensor:
    return backbone.forward_head(tail(inputs.float().contiguous(memory_format=torch.channels_last)),
                                 pre_logits=True)


def finetune_tail(model: ClipModel, table: CaptionTable, inputs: Tensor, text_feats: Tensor, first_trained: int, *,
                  steps: int = 120, batch_size: int = 256, lr: float = 1e-3, weight_decay: float = 0.05,
                  seed: int = 0, image_weights: Tensor | None = None) -> FitResult:
    """Train stages ``first_trained..`` + conv head, the image head, the text projection and ``logit_scale``.

    Args:
        model: A pair whose heads were fitted (:func:`~training.clip.locked_fit.fit_projections`); trained in place.
        table: Captions of the images, in the order of ``inputs``' second axis.
        inputs: :func:`stage_inputs` of the same ``first_trained``.
        text_feats: ``[M, F]`` locked text-trunk features of every caption row.
        first_trained: The first stage that trains (``blocks[first_trained]``), as given to ``stage_inputs``.
        steps: Optimiser steps (AdamW, cosine decay after a 10% warm-up).
        batch_size: Images per step.
        lr: Peak learning rate (one for the stages and the heads: the fitted heads need to move with them).
        weight_decay: On weight matrices and convolutions.
        seed: Seeds batches, views and caption choice.
        image_weights: Optional ``[N]`` sampling weights, as in ``fit_projections``.
    """
    backbone, _, tail = _stages(model, first_trained)
    _, head = image_trunk_and_head(model)
    projection = model.text.tower.projection
    if not (isinstance(head, nn.Linear) and isinstance(projection, nn.Linear)):
        raise ConfigError("tail fine-tuning trains the image head and the text projection as linear layers, got "
                          f"{type(head).__name__} and {type(projection).__name__}")
    trained = [p for m in tail.modules() if not isinstance(m, nn.BatchNorm2d)
               for p in m.parameters(recurse=False)]
    for p in backbone.parameters():
        p.requires_grad_(False)
    for tensor in [*trained, head.weight, head.bias, projection.weight]:
        tensor.requires_grad_(True)
    logit_scale = model.logit_scale
    logit_scale.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": [*trained, head.weight, projection.weight], "weight_decay": weight_decay},
                             {"params": [head.bias, logit_scale], "weight_decay": 0.0}], lr=lr)
    backbone.eval()  # frozen batch-norm statistics
    result, start = FitResult(), time.perf_counter()
    result.losses = train_pairs(
        table, text_feats, lambda view, pick: head(_pooled(tail, backbone, inputs[view, pick])), projection,
        logit_scale, opt, views=inputs.shape[0], steps=steps, batch_size=batch_size, warmup=max(1, steps // 10),
        seed=seed, loss=ClipLoss(gather_distributed=False), image_weights=image_weights)
    with torch.no_grad():
        logit_scale.clamp_(max=LOGIT_SCALE_MAX)
    for p in model.parameters():
        p.requires_grad_(False)
    record_tuned(model, first_trained, steps)
    result.scale, result.seconds = float(model.scale().detach()), time.perf_counter() - start
    log.info("fine-tuned stages %d.. in %.1f s: loss %.3f → %.3f, scale %.1f", first_trained, result.seconds,
             result.losses[0], result.losses[-1], result.scale)
    return result
