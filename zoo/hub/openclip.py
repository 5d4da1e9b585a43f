"""Real CLIP checkpoints (open_clip ViT models, whose image towers are timm's ``vit_*_clip_*``) as zoo models.

:func:`from_open_clip` builds an open_clip model, converts it to a :class:`ClipModel` — the image tower
becomes a timm ``VisionTransformer`` (timm's own open_clip key converter), the text tower our
:class:`TextTransformer` with open_clip's width, depth, activation and ``eot`` pooling — and the result
saves and loads like any entry. With internet a pretrained tag (``"openai"``, ``"laion2b_s34b_b79k"``)
gives real zero-shot; offline, ``pretrained=None`` gives the same architecture with random weights,
which is what the parity test compares with open_clip's own forward. timm's Hub CLIP repos
(``timm/vit_base_patch32_clip_224.openai``) carry ``open_clip_model.safetensors`` in this layout: pass
that file as ``pretrained``.

The tokenizer becomes a ``tokenizers`` BPE ``tokenizer.json`` built from open_clip's own vocabulary and
merges, so an entry needs neither open_clip (a dev dependency only) nor its Python tokenizer at run
time, and the ONNX service tokenizes with the same library as for every other entry. It reproduces
open_clip's ``SimpleTokenizer`` (NFC, whitespace collapsing, lower-casing, its split regex, byte-level
BPE with ``</w>``) except for ``ftfy``'s mojibake repair and HTML unescaping.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from torch import Tensor, nn

from zoo.clip import ClipModel
from zoo.config import EncoderConfig, ImageTowerInfo, PreprocessConfig, TextConfig
from zoo.encoders import ImageEncoder, create_timm, load_strict
from zoo.errors import ConfigError, UnknownNameError, UnsafeWeightsError
from zoo.pickles import is_pickle
from zoo.text import TextEncoder

SOT, EOT = "<start_of_text>", "<end_of_text>"
_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
#: Settings of open_clip configs that our towers do not reproduce; a config using one is refused.
_VISION_DEFAULTS = {"ls_init_value": None, "attentional_pool": False, "no_ln_pre": False, "pos_embed_type": "learnable",
                    "final_ln_after_pool": False, "pool_type": "tok", "timm_model_name": None, "qk_norm": False,
                    "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False, "scale_attn": False,
                    "scale_fc": False, "act_kwargs": None, "norm_kwargs": None, "patch_dropout": 0.0}
_TEXT_DEFAULTS = {"hf_model_name": None, "ls_init_value": None, "embed_cls": False, "no_causal_mask": False,
                  "final_ln_after_pool": False, "pool_type": "argmax", "proj_bias": False, "proj_type": "linear",
                  "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
                  "scale_attn": False, "scale_fc": False, "act_kwargs": None, "norm_kwargs": None,
                  "hf_tokenizer_name": None, "tokenizer_mode": None, "tokenizer_kwargs": None}


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError:
        raise ConfigError("converting an open_clip model needs open_clip: pip install open_clip_torch") from None
    return open_clip


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable-character table, which CLIP's BPE vocabulary is written in."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, (chr(c) for c in chars), strict=True))


def clip_bpe_tokenizer(bpe_path: Path | None = None) -> Tokenizer:
    """open_clip's BPE vocabulary (``bpe_simple_vocab_16e6.txt.gz``) as a ``tokenizers`` tokenizer."""
    if bpe_path is None:
        bpe_path = Path(_open_clip().__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe_path) as handle:
        lines = handle.read().decode("utf-8").split("\n")
    merges = [(a, b) for a, b in (line.split() for line in lines[1 : 49152 - 256 - 2 + 1])]
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges] + [SOT, EOT]
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, continuing_subword_prefix="",
                                     end_of_word_suffix="</w>", fuse_unk=False))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                                 normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([SOT, EOT])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{SOT} $A {EOT}", special_tokens=[(SOT, vocab[SOT]), (EOT, vocab[EOT])])
    return tokenizer


def _check_supported(name: str, cfg: dict[str, Any]) -> None:
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    odd = [f"vision_cfg.{k}={vision[k]!r}" for k, v in _VISION_DEFAULTS.items() if k in vision and vision[k] != v]
    odd += [f"text_cfg.{k}={text[k]!r}" for k, v in _TEXT_DEFAULTS.items() if k in text and text[k] != v]
    if not isinstance(vision.get("layers", 12), int):
        odd.append("a ResNet image tower")
    if odd:
        raise ConfigError(f"open_clip model {name!r} uses settings the zoo's towers do not reproduce: {odd}; "
                          "supported: ViT image towers with the standard CLIP text transformer")


def _image_arch_args(cfg: dict[str, Any], quick_gelu: bool) -> dict[str, Any]:
    vision = cfg["vision_cfg"]
    width, size = vision.get("width", 768), vision.get("image_size", 224)
    return {"patch_size": vision.get("patch_size", 16), "img_size": size, "embed_dim": width,
            "depth": vision.get("layers", 12), "num_heads": width // vision.get("head_width", 64),
            "mlp_ratio": vision.get("mlp_ratio", 4.0), "pre_norm": True, "class_token": True, "global_pool": "token",
            "act_layer": "quick_gelu" if quick_gelu else "gelu", "num_classes": cfg["embed_dim"], "in_chans": 3}


def _text_state(model: nn.Module) -> dict[str, Tensor]:
    """open_clip's text keys → :class:`TextTransformer`'s."""
    src = model.state_dict()
    out = {"token_embedding.weight": src["token_embedding.weight"],
           "positional_embedding": src["positional_embedding"],
           "ln_final.weight": src["ln_final.weight"], "ln_final.bias": src["ln_final.bias"],
           "projection.weight": src["text_projection"].T.contiguous()}
    swaps = {"ln_1": "norm1", "ln_2": "norm2", "attn.in_proj_weight": "qkv.weight", "attn.in_proj_bias": "qkv.bias",
             "attn.out_proj": "proj", "mlp.c_fc": "mlp.0", "mlp.c_proj": "mlp.2"}
    for key, value in src.items():
        if not key.startswith("transformer.resblocks."):
            continue
        tail = key.removeprefix("transformer.resblocks.")
        for old, new in swaps.items():
            tail = tail.replace(old, new)
        out[f"blocks.{tail}"] = value
    return out


def convert_open_clip(model: nn.Module, name: str, cfg: dict[str, Any], *, source: str = "",
                      license: str = "unknown") -> ClipModel:
    """An open_clip ``CLIP`` module → :class:`ClipModel` with identical weights, all loaded strictly."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    _check_supported(name, cfg)
    quick_gelu = bool(cfg.get("quick_gelu", False))
    image_args = _image_arch_args(cfg, quick_gelu)
    arch = "vit_base_patch16_clip_224"  # a timm CLIP ViT; every size argument is overridden in image_args
    backbone = create_timm(arch, image_args)
    visual: Any = model.visual
    state = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    load_strict(backbone, checkpoint_filter_fn(state, backbone), f"{name} visual")  # type: ignore[arg-type]
    pre = getattr(visual, "preprocess_cfg", {})
    size = image_args["img_size"]
    preprocess = PreprocessConfig(input_size=(3, size, size), interpolation=pre.get("interpolation", "bicubic"),
                                  crop_pct=1.0, mean=tuple(pre.get("mean", (0.48145466, 0.4578275, 0.40821073))),
                                  std=tuple(pre.get("std", (0.26862954, 0.26130258, 0.27577711))))
    text_cfg = cfg["text_cfg"]
    text_args = {"vocab_size": text_cfg.get("vocab_size", 49408), "context_length": text_cfg.get("context_length", 77),
                 "width": text_cfg.get("width", 512), "layers": text_cfg.get("layers", 12),
                 "heads": text_cfg.get("heads", 8), "mlp_ratio": text_cfg.get("mlp_ratio", 4.0), "causal": True,
                 "activation": "quick_gelu" if quick_gelu else "gelu", "norm_eps": 1e-5}
    text_config = TextConfig(arch="transformer", arch_args=text_args, embed_dim=cfg["embed_dim"],
                             context_length=text_args["context_length"], pooling="eot", trainable=False,
                             init=source or f"open_clip {name}", license=license)
    config = EncoderConfig(arch=arch, arch_args=image_args, embed_dim=cfg["embed_dim"], pooling="cls", normalize=True,
                           metric="cosine", preprocess=preprocess, method="clip", text=text_config, license=license,
                           source=source or f"open_clip {name}",
                           image_tower=ImageTowerInfo(init=source or f"open_clip {name}", trainable=False,
                                                      license=license))
    tokenizer = clip_bpe_tokenizer()
    text = TextEncoder(text_config, tokenizer)
    load_strict(text.tower, _text_state(model), f"{name} text")
    clip = ClipModel(config, tokenizer, visual=ImageEncoder(config, backbone), text=text)
    with torch.no_grad():
        clip.logit_scale.copy_(model.state_dict()["logit_scale"].reshape(()))
    return clip.eval()


def from_open_clip(name: str, pretrained: str | Path | None = None, *, license: str = "unknown",
                   ) -> ClipModel:
    """A zoo CLIP model from an open_clip architecture name, with random, local or pretrained weights.

    Args:
        name: An open_clip model name (``ViT-B-32``, ``ViT-B-16-quickgelu`` ...).
        pretrained: ``None`` (random weights, offline), a local ``.safetensors`` file in open_clip's layout
            (pickles are refused), or an open_clip pretrained tag (downloads; needs internet).
        license: The weights' licence, recorded in the entry (e.g. ``mit`` for OpenAI's).
    """
    open_clip = _open_clip()
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise UnknownNameError(f"unknown open_clip model {name!r}; e.g. {open_clip.list_models()[:8]}")
    path = Path(pretrained) if pretrained is not None and Path(str(pretrained)).suffix else None
    if path is not None and path.suffix != ".safetensors":
        kind = "a pickle" if is_pickle(path) else "not a .safetensors file"
        raise UnsafeWeightsError(f"{path} is {kind}; sslzoo loads open_clip weights from safetensors only "
                                 "(open_clip_model.safetensors on the Hub)")
    tag = None if path is not None else pretrained
    model: nn.Module = open_clip.create_model(name, pretrained=tag)
    if path is not None:
        load_strict(model, {k: v for k, v in load_file(str(path)).items() if k != "attn_mask"}, str(path))
    source = f"open_clip {name}" + (f" ({pretrained})" if pretrained else " (random init)")
    return convert_open_clip(model.eval(), name, cfg, source=source, license=license)
