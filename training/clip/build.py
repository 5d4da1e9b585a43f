"""Build a CLIP pair for a captioned dataset: image tower random or ImageNet, text tower ours or MiniLM.

The provenance of each tower (initialised from what, under which licence) goes into the config here;
whether it trained or stayed locked is added by the method's ``encoder()`` once training is over.
"""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer

from training.clip.captions import caption_lists
from zoo.clip import ClipModel
from zoo.config import ImageTowerInfo, TextConfig
from zoo.data import ImageDataset
from zoo.encoders import ImageEncoder, build_encoder
from zoo.errors import ConfigError
from zoo.pretrained import LITE0_ARCH, efficientnet_lite0_encoder, minilm_text_encoder
from zoo.text import TextEncoder
from zoo.tokenizer import train_wordpiece

PRETRAINED_IMAGE = ("efficientnet_lite0", LITE0_ARCH)
TEXT_TOWERS = ("transformer", "minilm")


def image_tower(image: str | ImageEncoder, dataset: ImageDataset, embed_dim: int, img_size: int | None = None,
                **image_args: Any) -> ImageEncoder:
    """A timm image tower with a linear projection to ``embed_dim`` (timm's head).

    ``efficientnet_lite0`` loads the ImageNet weights (224 px by default); any other name is a preset
    or timm architecture initialised at random, at the dataset's resolution by default.
    """
    if isinstance(image, ImageEncoder):
        if image.embed_dim != embed_dim:
            raise ConfigError(f"the image encoder gives {image.embed_dim}-d vectors, the joint space is {embed_dim}-d")
        if image.config.image_tower is None:
            image.config = image.config.replace(image_tower=ImageTowerInfo(init="random", license=dataset.license))
        return image
    if image in PRETRAINED_IMAGE:
        return efficientnet_lite0_encoder(embed_dim=embed_dim, img_size=img_size or 224)
    size = img_size or int(dataset.images.shape[1])
    encoder = build_encoder(image, img_size=size, in_chans=3, embed_dim=embed_dim, method="clip", **image_args)
    encoder.config = encoder.config.replace(image_tower=ImageTowerInfo(init="random", license=dataset.license))
    return encoder


def text_tower(text: str, dataset: ImageDataset, embed_dim: int, context_length: int = 32,
               vocab_size: int = 4096, text_args: dict[str, Any] | None = None) -> TextEncoder:
    """Our text transformer with a WordPiece trained on the captions, or the pretrained MiniLM."""
    if text == "minilm":
        return minilm_text_encoder(embed_dim=embed_dim, context_length=context_length)
    if text != "transformer":
        raise ConfigError(f"text tower must be one of {TEXT_TOWERS}, got {text!r}")
    tokenizer: Tokenizer = train_wordpiece([c for cs in caption_lists(dataset) for c in cs], vocab_size=vocab_size)
    args = {"vocab_size": tokenizer.get_vocab_size(), "context_length": context_length, **(text_args or {})}
    config = TextConfig(arch="transformer", arch_args=args, embed_dim=embed_dim, context_length=context_length,
                        init=f"random; WordPiece trained on {dataset.name} captions", license=dataset.license)
    return TextEncoder(config, tokenizer)


def build_clip_model(dataset: ImageDataset, *, image: str | ImageEncoder = "resnet_narrow", text: str = "transformer",
                     embed_dim: int = 256, img_size: int | None = None, context_length: int = 32,
                     vocab_size: int = 4096, text_args: dict[str, Any] | None = None,
                     **image_args: Any) -> ClipModel:
    """A CLIP pair for ``dataset`` whose config records both towers' origins and the training data."""
    visual = image_tower(image, dataset, embed_dim, img_size, **image_args)
    text_encoder = text_tower(text, dataset, embed_dim, context_length, vocab_size, text_args)
    config = visual.config.replace(text=text_encoder.config, method="clip", data=f"{dataset.name}/{dataset.split}")
    return ClipModel(config, text_encoder.tokenizer, visual=ImageEncoder(config, visual.backbone), text=text_encoder)
