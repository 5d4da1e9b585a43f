"""What every method here shares: batch checks, the encoder hand-off, and optimiser parameter groups."""

from __future__ import annotations

from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

from training.methods.base import Method
from training.parts.vit import as_vit
from zoo.encoders import ImageEncoder

# Parameters that are not weights of a linear map: decaying them only hurts (BYOL App. C, MAE App. A.1).
_NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "mask_token", "dist_token")


class SSLMethod(Method):
    """A :class:`Method` around an :class:`ImageEncoder`, with the helpers the method files share.

    ``self.backbone`` is the encoder's own timm module, so training it trains what :meth:`encoder`
    returns. Random views and masks draw from ``self.generator`` when set
    (tests), else from torch's global generator (which the trainer seeds and checkpoints).
    """

    min_batch_size: int = 1

    def __init__(self, encoder: ImageEncoder, name: str) -> None:
        super().__init__()
        if not isinstance(encoder, ImageEncoder):
            raise TypeError(f"{name} trains a zoo ImageEncoder, got {type(encoder).__name__}")
        if encoder.config.method in ("", "none"):
            encoder.config = encoder.config.replace(method=name)
        self.name = name
        self.image_encoder = encoder
        self.generator: torch.Generator | None = None

    @property
    def backbone(self) -> nn.Module:
        """The online timm backbone (the encoder's own module)."""
        return self.image_encoder.backbone

    @property
    def vit(self) -> VisionTransformer:
        """The backbone as a timm ViT, for the methods that mask patch tokens; a clear error otherwise.

        A property rather than an attribute: assigning the backbone to a second attribute would
        register it twice, and every checkpoint would store its weights twice.
        """
        return as_vit(self.backbone, self.name)

    @property
    def feature_dim(self) -> int:
        """Width of the backbone's pooled features (what the heads take)."""
        return self.image_encoder.embed_dim

    @property
    def image_size(self) -> tuple[int, int]:
        """The encoder's input ``(height, width)``: the global view size."""
        _, height, width = self.image_encoder.config.preprocess.input_size
        return height, width

    def check_batch(self, batch: dict[str, Any]) -> Tensor:
        """The batch's uint8 ``[B, C, H, W]`` images, or a clear error."""
        images = batch.get("images") if isinstance(batch, dict) else None
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("a batch must be a dict with 'images': a uint8 [B, C, H, W] tensor")
        if images.shape[0] < self.min_batch_size:
            raise ValueError(f"{self.name} needs batches of at least {self.min_batch_size} images, "
                             f"got {images.shape[0]}")
        return images

    def encoder(self) -> ImageEncoder:
        """The online encoder, heads, predictors, decoders and teachers left behind."""
        return self.image_encoder

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Two optimiser groups: weights with ``weight_decay``; biases, norms, tokens, positions without."""
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            if param.ndim <= 1 or any(token in name for token in _NO_DECAY_NAMES):
                no_decay.append(param)
            else:
                decay.append(param)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def features(self, pixels: Tensor) -> Tensor:
        """Pooled backbone features (before the encoder's optional L2 normalisation)."""
        return self.backbone(pixels)


def accept_keys_of_an_alias(module: nn.Module, alias: str) -> None:
    """Let ``module`` load state dicts that also hold a submodule under ``alias``, whose keys are dropped.

    MAE and I-JEPA once registered their backbone a second time as ``vit``; checkpoints written then
    hold each backbone tensor under both names. The backbone's own keys still load, so such a run
    resumes; only the copies are dropped.
    """
    def drop(_: nn.Module, state: dict[str, Any], prefix: str, *__: Any) -> None:
        for key in [k for k in state if k.startswith(f"{prefix}{alias}.")]:
            del state[key]

    module.register_load_state_dict_pre_hook(drop)


def scalar(value: float, like: Tensor) -> Tensor:
    """A loggable scalar on ``like``'s device (the trainer stacks the step's scalars into one tensor)."""
    return torch.tensor(float(value), device=like.device)


def embeddings_of(features: Tensor) -> Tensor:
    """Detached float features for the trainer's collapse diagnostics."""
    return features.detach().float()
