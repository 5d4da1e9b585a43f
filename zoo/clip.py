"""A CLIP pair: image tower, text tower and the learnable temperature ``logit_scale``.

Both towers project into one joint space and are L2-normalised there, so one config (with
``text`` set) describes the pair and one ``embedding_space`` id covers both towers' vectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer
from torch import Tensor, nn

from zoo.backend import LOGIT_SCALE_MAX
from zoo.config import EncoderConfig, TextConfig
from zoo.encoders import ImageEncoder, build_encoder, load_strict
from zoo.errors import ConfigError
from zoo.text import TextEncoder


class ClipModel(nn.Module):
    """Image and text towers plus ``logit_scale`` (stored as a log, clamped at ln 100)."""

    def __init__(self, config: EncoderConfig, tokenizer: Tokenizer, visual: ImageEncoder | None = None,
                 text: TextEncoder | None = None, init_logit_scale: float = math.log(1 / 0.07)) -> None:
        super().__init__()
        if config.text is None:
            raise ConfigError("a CLIP model needs config.text (the text tower's config)")
        if config.text.embed_dim != config.embed_dim:
            raise ConfigError(f"text embed_dim {config.text.embed_dim} != image embed_dim {config.embed_dim}")
        self.config = config
        self.visual = visual if visual is not None else ImageEncoder(config)
        self.text = text if text is not None else TextEncoder(config.text, tokenizer)
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))

    @property
    def embed_dim(self) -> int:
        """Width of the joint space."""
        return self.config.embed_dim

    def scale(self) -> Tensor:
        """``exp(logit_scale)`` with the log clamped at ln 100, as in the CLIP paper."""
        return self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()

    def similarity_scale(self) -> float:
        """:meth:`scale` as a plain number, outside autograd: the backend contract's zero-shot scale."""
        return float(self.scale().detach())

    def forward(self, pixels: Tensor, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Normalised image and text embeddings and the logit scale."""
        return self.visual(pixels), self.text(ids, mask), self.scale()

    def embed_array(self, pixels: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Preprocessed float32 ``[N, C, H, W]`` → unit vectors in the joint space."""
        return self.visual.embed_array(pixels, batch_size)

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 64) -> np.ndarray:
        """PIL images → unit vectors in the joint space."""
        return self.visual.embed_images(images, batch_size)

    def embed_uint8(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """A dataset's uint8 images → unit vectors in the joint space."""
        return self.visual.embed_uint8(images, batch_size)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Strings → unit vectors in the joint space."""
        return self.text.embed_texts(texts, batch_size)

    def tensor_files(self) -> dict[str, dict[str, Tensor]]:
        """Image tower in ``model.safetensors`` (timm keys), text tower and scale in ``text.safetensors``."""
        text_state = {k: v.detach().contiguous() for k, v in self.text.tower.state_dict().items()}
        text_state["logit_scale"] = self.logit_scale.detach().reshape(1).contiguous()
        return {**self.visual.tensor_files(), "text.safetensors": text_state}

    def load_tensor_files(self, files: dict[str, dict[str, Tensor]]) -> None:
        """Strict load of both towers and the scale."""
        self.visual.load_tensor_files(files)
        text_state = dict(files["text.safetensors"])
        scale = text_state.pop("logit_scale", None)
        if scale is None:
            raise ConfigError("text.safetensors has no 'logit_scale'")
        load_strict(self.text.tower, text_state, "text.safetensors")
        with torch.no_grad():
            self.logit_scale.copy_(scale.reshape(()))

    def extra_files(self) -> dict[str, bytes]:
        """The tokenizer travels as ``tokenizer.json``."""
        return {self.config.text.tokenizer_file if self.config.text else "tokenizer.json":
                self.text.tokenizer.to_str().encode()}


def build_clip(arch: str, tokenizer: Tokenizer, *, embed_dim: int = 256, img_size: int | None = None,
               in_chans: int = 3, text_arch: str = "transformer", context_length: int = 32,
               text_args: dict | None = None, **image_args: object) -> ClipModel:
    """A randomly initialised CLIP pair: any image architecture, a registered text architecture."""
    visual = build_encoder(arch, img_size=img_size, in_chans=in_chans, embed_dim=embed_dim, method="clip",
                           **image_args)  # type: ignore[arg-type]
    args = {"vocab_size": tokenizer.get_vocab_size(), "context_length": context_length, **(text_args or {})}
    text_config = TextConfig(arch=text_arch, arch_args=args, embed_dim=embed_dim, context_length=context_length)
    config = visual.config.replace(text=text_config)
    return ClipModel(config, tokenizer, visual=ImageEncoder(config, visual.backbone))
