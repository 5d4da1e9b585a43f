"""Image preprocessing in NumPy and Pillow only.

The torch and onnxruntime backends share this code so that both see identical pixels, and so that
an ONNX client needs nothing beyond numpy and pillow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from zoo.config import PreprocessConfig
from zoo.errors import DataError

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


def _to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Convert to RGB or L, compositing transparency onto white (emoji and clip art are RGBA)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L" if channels == 1 else "RGB")


def resize_and_crop(image: Image.Image, config: PreprocessConfig) -> Image.Image:
    """Resize then centre-crop exactly as timm's eval transform does.

    A square input resizes the shorter side to ``size / crop_pct`` (keeping the aspect ratio, the long
    side truncated as torchvision does); a non-square input resizes to the scaled size itself.
    """
    _, height, width = config.input_size
    scale_h = math.floor(height / config.crop_pct)
    scale_w = math.floor(width / config.crop_pct)
    src_w, src_h = image.size
    if height == width:
        short, long = min(src_w, src_h), max(src_w, src_h)
        new_short, new_long = scale_h, int(scale_h * long / short)
        new_w, new_h = (new_short, new_long) if src_w <= src_h else (new_long, new_short)
    else:
        new_w, new_h = scale_w, scale_h
    if (new_w, new_h) != (src_w, src_h):
        image = image.resize((new_w, new_h), _RESAMPLE[config.interpolation])
    left = round((new_w - width) / 2.0)
    top = round((new_h - height) / 2.0)
    return image.crop((left, top, left + width, top + height))


def preprocess_image(image: Image.Image, config: PreprocessConfig) -> np.ndarray:
    """One PIL image → float32 ``[C, H, W]`` standardised as the encoder was trained."""
    if not isinstance(image, Image.Image):
        raise DataError(f"expected a PIL image, got {type(image).__name__}")
    channels = config.input_size[0]
    image = resize_and_crop(_to_mode(image, channels), config)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def preprocess_batch(images: Sequence[Image.Image], config: PreprocessConfig) -> np.ndarray:
    """A list of PIL images → float32 ``[B, C, H, W]``."""
    if len(images) == 0:
        raise DataError("no images given")
    return np.stack([preprocess_image(image, config) for image in images])


def preprocess_uint8(images: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """A uint8 ``[N, H, W, C]`` array (a dataset) → float32 ``[N, C, H, W]``, skipping PIL when sizes match.

    Datasets are already at the encoder's resolution most of the time; going through PIL image by
    image would cost more than the network itself for small models.
    """
    channels, height, width = config.input_size
    if images.ndim != 4:
        raise DataError(f"expected uint8 [N, H, W, C] images, got shape {images.shape}")
    if images.shape[1:3] == (height, width) and config.crop_pct == 1.0:
        pixels = images.astype(np.float32) / 255.0
        if pixels.shape[3] != channels:
            pixels = _convert_channels(pixels, channels)
        mean = np.asarray(config.mean, dtype=np.float32)
        std = np.asarray(config.std, dtype=np.float32)
        return np.ascontiguousarray(((pixels - mean) / std).transpose(0, 3, 1, 2))
    pil = [Image.fromarray(im[:, :, 0] if im.shape[2] == 1 else im) for im in images]
    return preprocess_batch(pil, config)


def _convert_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Grey ↔ RGB on float arrays with PIL's luma weights, so both paths agree."""
    if channels == 3:
        return np.repeat(pixels, 3, axis=3)
    weights = np.asarray([0.299, 0.587, 0.114], dtype=np.float32)
    return (pixels @ weights)[:, :, :, None]
