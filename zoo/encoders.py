"""The image encoder: a timm backbone plus an explicit embedding contract.

The backbone is built with ``timm.create_model(arch, **arch_args)`` where ``arch_args`` holds every
argument (``num_classes``, ``global_pool``, image and patch size, ...), and the saved weights are the
backbone's own ``state_dict``. So the weights stay timm-compatible: ``timm.create_model(arch,
pretrained=True, pretrained_cfg_overlay={"file": path}, **arch_args)`` loads them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from zoo.architectures import PRESETS, get_preset
from zoo.concepts import install_concept_head
from zoo.config import EncoderConfig, PreprocessConfig
from zoo.errors import ConfigError
from zoo.preprocess import preprocess_batch, preprocess_uint8

# How each pooling in the contract is asked of timm. ViTs pool with ``global_pool='token'|'avg'|'map'``,
# CNNs with ``global_pool='avg'``; ``flatten`` and ``cls_mean`` ask for no pooling and install a module
# that reads the unpooled output (:class:`FlattenMap`, :class:`ClsPatchMean`).
_TIMM_POOL = {"cls": "token", "mean": "avg", "avg": "avg", "flatten": "", "cls_mean": "", "map": "map"}
_TRANSFORMER_PREFIXES = ("vit", "deit", "eva")
EMBED_BATCH = 64


def _is_transformer(model: nn.Module) -> bool:
    return hasattr(model, "patch_embed") and hasattr(model, "blocks")


class FlattenMap(nn.Module):
    """The ``flatten`` pooling: a CNN's whole final feature map as one vector (``C·H·W``, channel-major).

    Global average pooling throws away *where* a feature fired. On aligned images (garments, digits)
    where it fired is much of the class, which is why raw pixels are a strong k-NN baseline there; the
    flattened map keeps it. It has no parameters, so the backbone's ``state_dict`` stays timm's own.
    """

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` → ``[B, C·H·W]``."""
        return x.flatten(1)


class ClsPatchMean(nn.Module):
    """The ``cls_mean`` pooling: a ViT's class token concatenated with the mean of its patch tokens.

    DINOv2's and DINOv3's linear probes read features out this way (``x_norm_clstoken`` beside
    ``x_norm_patchtokens.mean(1)``, a ``2·D`` vector): the class token alone loses the spatial average that
    the patch tokens carry. Register tokens sit between the two and are left out, as upstream does. It has
    no parameters and takes the place of timm's (empty) classifier, so the state dict stays timm's own.
    """

    def __init__(self, num_prefix_tokens: int) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, tokens: Tensor) -> Tensor:
        """``[B, N, D]`` normalised tokens (class token first) → ``[B, 2·D]``."""
        return torch.cat([tokens[:, 0], tokens[:, self.num_prefix_tokens :].mean(dim=1)], dim=-1)


def _install_flatten(backbone: nn.Module) -> nn.Module:
    if _is_transformer(backbone) or not isinstance(getattr(backbone, "global_pool", None), nn.Module):
        raise ConfigError(f"pooling 'flatten' needs a CNN with a timm 'global_pool' ({type(backbone).__name__} "
                          "has none); use 'avg', or 'cls'/'mean' for a ViT")
    backbone.global_pool = FlattenMap()
    return backbone


def _install_cls_mean(backbone: nn.Module) -> nn.Module:
    unpooled = _is_transformer(backbone) and getattr(backbone, "global_pool", None) == ""
    if not unpooled or getattr(backbone, "cls_token", None) is None:
        raise ConfigError(f"pooling 'cls_mean' needs a timm ViT with a class token built with global_pool='' "
                          f"({type(backbone).__name__} is not one); use 'cls' or 'mean'")
    if not isinstance(getattr(backbone, "head", None), nn.Identity):
        raise ConfigError("pooling 'cls_mean' reads the tokens themselves: it cannot be combined with a "
                          "classifier or projection head (num_classes must be 0)")
    backbone.head = ClsPatchMean(int(getattr(backbone, "num_prefix_tokens")))  # noqa: B009
    return backbone


# Poolings timm cannot ask for by name: a parameter-free module is installed in the backbone instead.
_INSTALLED_POOLINGS = {"flatten": _install_flatten, "cls_mean": _install_cls_mean}


def install_pooling(backbone: nn.Module, pooling: str) -> nn.Module:
    """Install the module of a pooling timm has no name for (``flatten``, ``cls_mean``); else leave it be."""
    install = _INSTALLED_POOLINGS.get(pooling)
    return install(backbone) if install is not None else backbone


_RESNET_STAGES = ("layer1", "layer2", "layer3", "layer4")


def keep_stages(backbone: nn.Module, stages: int) -> nn.Module:
    """Keep a timm ResNet's stem and first ``stages`` stages (``layer1``..); the later ones become identities.

    Self-supervised losses shape the last stages most: on small aligned images an earlier stage can
    be the better readout for k-NN (``benchmarks/readout_layers.py`` measures each). The kept modules
    keep timm's names, so a trained backbone's weights load into the cut one as they are.
    """
    if not all(isinstance(getattr(backbone, name, None), nn.Module) for name in _RESNET_STAGES):
        raise ConfigError(f"stages needs a timm ResNet (stem + layer1..layer4); {type(backbone).__name__} is not one")
    if not 1 <= stages <= len(_RESNET_STAGES):
        raise ConfigError(f"stages must be between 1 (stem + layer1) and {len(_RESNET_STAGES)}, got {stages}")
    if not isinstance(getattr(backbone, "fc", None), nn.Identity):
        raise ConfigError("stages cannot be combined with embed_dim (the projection expects the last stage's width)")
    for name in _RESNET_STAGES[stages:]:
        setattr(backbone, name, nn.Identity())
    info: list[dict[str, Any]] = list(getattr(backbone, "feature_info"))[: stages + 1]  # noqa: B009
    setattr(backbone, "feature_info", info)  # noqa: B010  (plain attributes of timm's model, not modules)
    setattr(backbone, "num_features", int(info[-1]["num_chs"]))  # noqa: B010
    return backbone


def build_backbone(config: EncoderConfig) -> nn.Module:
    """The timm model a config describes: architecture, kept stages, and pooling."""
    backbone = create_timm(config.arch, config.arch_args)
    if config.stages is not None:
        backbone = keep_stages(backbone, config.stages)
    return install_concept_head(install_pooling(backbone, config.pooling), config.concepts)


def timm_pool_arg(pooling: str) -> str:
    """The ``global_pool`` argument that asks timm for a pooling of the contract (``''`` for installed ones)."""
    return _TIMM_POOL.get(pooling, pooling)


def output_width(backbone: nn.Module, pooling: str, preprocess: PreprocessConfig) -> int:
    """Width of the backbone's vectors: timm's when pooled, twice the tokens' for ``cls_mean``, else measured."""
    if pooling == "cls_mean":
        return 2 * int(getattr(backbone, "num_features"))  # noqa: B009
    if pooling != "flatten":
        return timm_width(backbone)
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        width = int(backbone(torch.zeros(1, *preprocess.input_size)).shape[1])
    backbone.train(was_training)
    return width


class ImageEncoder(nn.Module):
    """An image tower whose ``forward`` returns embeddings under its config's contract."""

    def __init__(self, config: EncoderConfig, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        if backbone is None:
            backbone = build_backbone(config)
        self.backbone: nn.Module = backbone
        width = output_width(self.backbone, config.pooling, config.preprocess)
        if config.embed_dim != width:
            raise ConfigError(f"config says embed_dim={config.embed_dim} but {config.arch} gives {width}")

    @property
    def embed_dim(self) -> int:
        """Width of the vectors ``forward`` returns."""
        return self.config.embed_dim

    @property
    def preprocess_config(self) -> PreprocessConfig:
        """The preprocessing the weights were trained with."""
        return self.config.preprocess

    def forward_features(self, pixels: Tensor) -> Tensor:
        """Unpooled features (tokens for a ViT, a feature map for a CNN), timm's contract."""
        features: Tensor = getattr(self.backbone, "forward_features")(pixels)  # noqa: B009
        return features

    def forward(self, pixels: Tensor) -> Tensor:
        """``[B, C, H, W]`` standardised pixels → ``[B, D]`` embeddings, normalised per the contract."""
        vectors = self.backbone(pixels)
        return F.normalize(vectors, dim=-1) if self.config.normalize else vectors

    @torch.inference_mode()
    def embed_array(self, pixels: np.ndarray, batch_size: int = EMBED_BATCH) -> np.ndarray:
        """Preprocessed float32 ``[N, C, H, W]`` → float32 ``[N, D]``, in batches."""
        self.eval()
        out = [self(torch.from_numpy(pixels[i : i + batch_size])) for i in range(0, len(pixels), batch_size)]
        return torch.cat(out).float().numpy()

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = EMBED_BATCH) -> np.ndarray:
        """PIL images → float32 ``[N, D]`` with the model's own preprocessing."""
        chunks = [
            self.embed_array(preprocess_batch(images[i : i + batch_size], self.config.preprocess))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(chunks)

    def embed_uint8(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """A dataset's uint8 ``[N, H, W, C]`` array → float32 ``[N, D]``."""
        chunks = [
            self.embed_array(preprocess_uint8(images[i : i + batch_size], self.config.preprocess))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(chunks)

    def tensor_files(self) -> dict[str, dict[str, Tensor]]:
        """Weights by file name: the backbone's own timm ``state_dict``."""
        return {"model.safetensors": {k: v.detach().contiguous() for k, v in self.backbone.state_dict().items()}}

    def load_tensor_files(self, files: dict[str, dict[str, Tensor]]) -> None:
        """Load weights strictly, naming missing and unexpected keys."""
        load_strict(self.backbone, files["model.safetensors"], "model.safetensors")


def timm_width(model: nn.Module) -> int:
    """Width of a timm model's output: its head's if it has one, else its pooled features'."""
    return int(getattr(model, "num_classes", 0) or getattr(model, "num_features"))  # noqa: B009


def create_timm(arch: str, arch_args: dict[str, Any]) -> nn.Module:
    """``timm.create_model`` without pretrained weights, its failures turned into a ConfigError."""
    try:
        return timm.create_model(arch, pretrained=False, **arch_args)
    except (RuntimeError, TypeError, ValueError, AssertionError) as exc:
        raise ConfigError(f"timm cannot build {arch!r} with {arch_args}: {exc}") from exc


def load_strict(module: nn.Module, state: dict[str, Tensor], filename: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names the keys and the file."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ConfigError(
            f"{filename} does not match the architecture: missing keys {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}"
            f"{'...' if len(unexpected) > 8 else ''}"
        )
    bad = [k for k, v in state.items() if v.shape != expected[k].shape]
    if bad:
        shapes = {k: (tuple(state[k].shape), tuple(expected[k].shape)) for k in bad[:4]}
        raise ConfigError(f"{filename}: tensor shapes differ from the architecture (file, model): {shapes}")
    module.load_state_dict(state, strict=True)


def default_preprocess(img_size: int, in_chans: int, mean: Sequence[float] | None = None,
                       std: Sequence[float] | None = None) -> PreprocessConfig:
    """Preprocessing for an encoder trained from scratch on small images: no crop, 0.5 standardisation."""
    return PreprocessConfig(
        input_size=(in_chans, img_size, img_size),
        interpolation="bicubic",
        crop_pct=1.0,
        mean=tuple(mean) if mean is not None else (0.5,) * in_chans,
        std=tuple(std) if std is not None else (0.5,) * in_chans,
    )


def build_encoder(
    arch: str,
    *,
    img_size: int | None = None,
    in_chans: int = 3,
    pooling: str | None = None,
    embed_dim: int | None = None,
    normalize: bool = True,
    preprocess: PreprocessConfig | None = None,
    method: str = "none",
    **arch_args: Any,
) -> ImageEncoder:
    """Build a randomly initialised encoder from a preset or any timm architecture.

    Args:
        arch: A preset name (``vit_tiny``, ``resnet_narrow``, ...) or a timm architecture name.
        img_size: Input resolution; given to ViTs, and recorded in the preprocessing for all.
        in_chans: 1 for grey images, 3 for colour.
        pooling: ``cls``, ``mean`` or ``cls_mean`` (both) for ViTs, ``map`` for ViTs with an attention-pool
            head, ``avg`` or ``flatten`` (the whole final map) for CNNs; the
            preset's choice by default.
        embed_dim: Adds a linear projection to this width (timm's head); the backbone's width if None.
        normalize: Whether vectors are L2-normalised (metric ``cosine``) or not (``dot``).
        preprocess: Overrides the default preprocessing (0.5 mean/std, no crop).
        method: The training method, recorded in the config.
        **arch_args: More ``timm.create_model`` arguments (``depth``, ``drop_path_rate``, ...).
    """
    preset_args: dict[str, Any] = {}
    if arch in PRESETS:
        preset = get_preset(arch)
        arch, preset_args, default_pool = preset.arch, dict(preset.arch_args), preset.pooling
    else:
        default_pool = "cls" if arch.startswith(_TRANSFORMER_PREFIXES) else "avg"
    pooling = pooling or default_pool
    args = {**preset_args, **arch_args, "in_chans": in_chans, "num_classes": embed_dim or 0}
    if img_size is not None and (arch.startswith(_TRANSFORMER_PREFIXES) or "img_size" in args):
        args["img_size"] = img_size
    args["global_pool"] = _TIMM_POOL.get(pooling, pooling)
    backbone = install_pooling(create_timm(arch, args), pooling)
    if pooling == "cls" and not _is_transformer(backbone):
        raise ConfigError(f"pooling 'cls' needs a transformer; {arch} is not one (use 'avg')")
    size = img_size or int(args.get("img_size", 224))
    preprocess = preprocess or default_preprocess(size, in_chans)
    config = EncoderConfig(
        arch=arch,
        arch_args=args,
        embed_dim=output_width(backbone, pooling, preprocess),
        pooling=pooling,
        normalize=normalize,
        metric="cosine" if normalize else "dot",
        preprocess=preprocess,
        method=method,
    )
    return ImageEncoder(config, backbone)


def with_pooling(encoder: ImageEncoder, pooling: str | None = None, stages: int | None = None) -> ImageEncoder:
    """The same trained backbone read out another way: another pooling, or after an earlier stage.

    ``pooling``: e.g. ``flatten`` (the whole map) after training with ``avg``; ``stages``: keep the first
    ``stages`` stages (:func:`keep_stages`). Neither adds parameters, so the kept weights carry over
    unchanged; the contract records the readout and width, and a saved ``flatten`` entry gets its own
    embedding-space id (:func:`zoo.manifest.readout_tag`; cut stages change the weights, hence the id).
    """
    pooling = pooling or encoder.config.pooling
    stages = encoder.config.stages if stages is None else stages
    if pooling == encoder.config.pooling and stages == encoder.config.stages:
        return encoder
    if encoder.config.stages is not None and stages is not None and stages > encoder.config.stages:
        raise ConfigError(f"cannot read out after stage {stages}: the encoder keeps only {encoder.config.stages}")
    args = {**encoder.config.arch_args, "global_pool": _TIMM_POOL.get(pooling, pooling)}
    config = encoder.config.replace(arch_args=args, pooling=pooling, stages=stages)
    backbone = build_backbone(config)
    kept = backbone.state_dict()
    trained = encoder.backbone.state_dict()
    load_strict(backbone, {k: v for k, v in trained.items() if k in kept}, "the trained backbone")
    config = config.replace(embed_dim=output_width(backbone, pooling, encoder.config.preprocess))
    return ImageEncoder(config, backbone).train(encoder.training)
