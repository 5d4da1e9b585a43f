"""I-JEPA checkpoints in the transformers layout (``IJepaModel``) as timm ViTs.

Meta's I-JEPA weights reach the Hub as transformers repos (``facebook/ijepa_vith14_1k``: ``config.json``
with ``model_type`` ``ijepa``, ``model.safetensors``, ``preprocessor_config.json``). The network is a
plain pre-norm ViT without a class token, which is exactly timm's ``vit_huge_patch14_gap_224`` family
(``class_token=False``, the final norm on every token, no ``fc_norm``): the tensors map one to one,
except that transformers keeps query, key and value apart where timm has one ``qkv`` projection. So the
converted entry is an ordinary timm ViT that loads, exports and serves like any other, read out by the
mean of the patch tokens, I-JEPA's own read-out (``IJepaModel(...).last_hidden_state.mean(1)``).

What the timm twin cannot reproduce is refused by name before any weight is read: another activation,
bias-free attention, a LayerNorm epsilon other than timm's ``1e-6``, non-square images or patches,
a classification head, a pooler or any tensor the mapping does not place. The file names
(``encoder.layer.N.attention.attention.query`` ...) are the ones transformers writes and the Hub holds;
transformers 5 renames them only in memory.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from zoo.config import EncoderConfig, PreprocessConfig
from zoo.encoders import ImageEncoder, create_timm, load_strict
from zoo.errors import ConfigError

log = logging.getLogger(__name__)
MODEL_TYPE = "ijepa"
WEIGHTS = "model.safetensors"
PREPROCESSOR = "preprocessor_config.json"
#: The timm architecture of the converted entry; every size argument is overridden from the config.
ARCH = "vit_huge_patch14_gap_224"
#: transformers settings the timm ViT hard-wires, and the value it needs.
_FIXED = {"hidden_act": "gelu", "qkv_bias": True}
_TIMM_LN_EPS = 1e-6
#: PIL resampling codes (what ``resample`` in a transformers image processor holds) → timm's names.
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box"}
_TOP = {"embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "embeddings.position_embeddings": "pos_embed",
        "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}
_BLOCK = {"layernorm_before": "norm1", "attention.output.dense": "attn.proj", "layernorm_after": "norm2",
          "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"}
_QKV = ("query", "key", "value")


def _square(value: Any, what: str) -> int:
    sizes = [value, value] if isinstance(value, int) else list(value)
    if len(sizes) != 2 or sizes[0] != sizes[1] or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise ConfigError(f"I-JEPA {what} {value!r}: sslzoo converts square sizes only")
    return int(sizes[0])


def arch_args(config: dict[str, Any]) -> dict[str, Any]:
    """The timm ViT arguments of an ``IJepaConfig`` (as ``config.json`` holds it); unsupported settings refused."""
    if config.get("model_type") != MODEL_TYPE:
        raise ConfigError(f"not an I-JEPA config: model_type {config.get('model_type')!r}")
    odd = [f"{key}={config.get(key)!r} (timm: {value!r})" for key, value in _FIXED.items()
           if config.get(key, value) != value]
    eps = float(config.get("layer_norm_eps", 1e-12))
    if not math.isclose(eps, _TIMM_LN_EPS, rel_tol=1e-6):
        odd.append(f"layer_norm_eps={eps!r} (timm: {_TIMM_LN_EPS!r})")
    width, heads = int(config.get("hidden_size", 768)), int(config.get("num_attention_heads", 12))
    hidden = int(config.get("intermediate_size", 3072))
    if width % heads or int(config.get("head_dim", width // heads)) != width // heads:
        odd.append(f"hidden_size {width} with {heads} heads of head_dim {config.get('head_dim')}")
    if odd:
        raise ConfigError(f"this I-JEPA config uses settings sslzoo's timm ViT does not reproduce: {odd}")
    return {"img_size": _square(config.get("image_size", 224), "image_size"),
            "patch_size": _square(config.get("patch_size", 16), "patch_size"), "embed_dim": width,
            "depth": int(config.get("num_hidden_layers", 12)), "num_heads": heads, "mlp_ratio": hidden / width,
            "qkv_bias": True, "class_token": False, "global_pool": "avg", "fc_norm": False, "num_classes": 0,
            "in_chans": int(config.get("num_channels", 3))}


def timm_state(state: dict[str, Tensor], depth: int) -> dict[str, Tensor]:
    """``IJepaModel`` tensors (the names transformers writes) → timm ViT tensors; leftovers are an error."""
    left = dict(state)
    missing: list[str] = []

    def take(key: str) -> Tensor:
        if key not in left:
            missing.append(key)
            return torch.empty(0)
        return left.pop(key)

    out = {new: take(old) for old, new in _TOP.items()}
    for i in range(depth):
        src, dst = f"encoder.layer.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            parts = [take(f"{src}attention.attention.{name}.{kind}") for name in _QKV]
            out[f"{dst}attn.qkv.{kind}"] = torch.cat(parts) if all(p.numel() for p in parts) else torch.empty(0)
            for old, new in _BLOCK.items():
                out[f"{dst}{new}.{kind}"] = take(f"{src}{old}.{kind}")
    if missing or left:
        hint = (" (a classification head or pooler: convert the bare IJepaModel)"
                if any(k.startswith(("ijepa.", "classifier.", "pooler.")) for k in left) else "")
        raise ConfigError(f"{WEIGHTS} is not an IJepaModel state dict sslzoo can convert: missing "
                          f"{sorted(missing)[:6]}, not placed {sorted(left)[:6]}{hint}")
    return out


def preprocess(folder: Path, image_size: int, in_chans: int) -> PreprocessConfig:
    """The eval preprocessing of the repo's ``preprocessor_config.json``, or ImageNet's when it has none.

    transformers' ViT processors resize to ``size`` (``height``/``width``: both sides, the aspect ratio
    not kept; ``shortest_edge``: the shorter side) then optionally centre-crop ``crop_size``. sslzoo
    resizes the shorter side to ``height / crop_pct`` and centre-crops, which is the same on square
    images; a squashing processor is recorded as ``crop_pct=1`` and said so in the log.
    """
    path = folder / PREPROCESSOR
    if not path.is_file():
        return PreprocessConfig(input_size=(in_chans, image_size, image_size))
    raw = json.loads(path.read_text())
    if not raw.get("do_rescale", True) or not math.isclose(float(raw.get("rescale_factor", 1 / 255)), 1 / 255):
        raise ConfigError(f"{PREPROCESSOR}: pixels must be rescaled by 1/255, as sslzoo does")
    normalize = raw.get("do_normalize", True)
    mean = tuple(float(m) for m in raw.get("image_mean", (0.485, 0.456, 0.406))) if normalize else (0.0,) * in_chans
    std = tuple(float(s) for s in raw.get("image_std", (0.229, 0.224, 0.225))) if normalize else (1.0,) * in_chans
    size = raw.get("size") or {}
    size = {"height": size, "width": size} if isinstance(size, int) else dict(size)
    crop = raw.get("crop_size") or {}
    crop = int(crop if isinstance(crop, int) else crop.get("height", image_size))
    if "shortest_edge" in size:
        crop_pct = crop / int(size["shortest_edge"]) if raw.get("do_center_crop") else 1.0
    else:
        crop_pct = 1.0
        log.info("%s resizes both sides to %sx%s; sslzoo resizes the shorter side and centre-crops, the same on "
                 "square images", PREPROCESSOR, size.get("height"), size.get("width"))
    resample = int(raw.get("resample", 2))
    if resample not in _RESAMPLE:
        raise ConfigError(f"{PREPROCESSOR}: resample {resample} has no timm interpolation name")
    return PreprocessConfig(input_size=(in_chans, image_size, image_size), interpolation=_RESAMPLE[resample],
                            crop_pct=min(crop_pct, 1.0), mean=mean, std=std)


def convert(folder: Path, *, source: str, license: str, method: str = "ijepa", data: str = "") -> ImageEncoder:
    """A downloaded I-JEPA transformers repo → an :class:`ImageEncoder` with identical weights, loaded strictly."""
    raw = json.loads((folder / "config.json").read_text())
    args = arch_args(raw)
    backbone = create_timm(ARCH, args)
    load_strict(backbone, timm_state(load_file(str(folder / WEIGHTS)), args["depth"]), WEIGHTS)
    config = EncoderConfig(arch=ARCH, arch_args=args, embed_dim=args["embed_dim"], pooling="mean", normalize=True,
                           metric="cosine", preprocess=preprocess(folder, args["img_size"], args["in_chans"]),
                           method=method, license=license, source=source, data=data)
    return ImageEncoder(config, backbone).eval()
