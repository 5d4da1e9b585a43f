"""Our NumPy/PIL preprocessing against timm's own eval transform (an independent implementation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform

from zoo.config import PreprocessConfig
from zoo.errors import DataError
from zoo.preprocess import preprocess_batch, preprocess_image, preprocess_uint8


def _timm_reference(image: Image.Image, config: PreprocessConfig) -> np.ndarray:
    transform = create_transform(input_size=config.input_size, interpolation=config.interpolation,
                                 crop_pct=config.crop_pct, mean=config.mean, std=config.std, is_training=False)
    tensor = transform(image.convert("RGB") if config.input_size[0] == 3 else image.convert("L"))
    return torch.as_tensor(tensor).numpy()


@pytest.mark.parametrize("size,crop_pct,interp,src", [
    (224, 0.875, "bicubic", (300, 200)),
    (224, 0.9, "bilinear", (180, 260)),
    (32, 1.0, "bicubic", (50, 50)),
    (28, 1.0, "nearest", (28, 28)),
    (64, 0.95, "bicubic", (97, 131)),
])
def test_matches_timm_eval_transform(size, crop_pct, interp, src):
    rng = np.random.default_rng(size)
    image = Image.fromarray(rng.integers(0, 256, size=(src[1], src[0], 3), dtype=np.uint8))
    config = PreprocessConfig(input_size=(3, size, size), interpolation=interp, crop_pct=crop_pct)
    ours = preprocess_image(image, config)
    assert ours.shape == (3, size, size) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _timm_reference(image, config), atol=1e-5)


def test_uint8_fast_path_equals_pil_path():
    config = PreprocessConfig(input_size=(1, 28, 28), crop_pct=1.0, mean=(0.5,), std=(0.5,))
    images = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28, 1), dtype=np.uint8)
    pil = [Image.fromarray(im[:, :, 0]) for im in images]
    np.testing.assert_allclose(preprocess_uint8(images, config), preprocess_batch(pil, config), atol=1e-6)


def test_transparent_images_composite_on_white():
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    config = PreprocessConfig(input_size=(3, 8, 8), crop_pct=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_allclose(preprocess_image(rgba, config), np.ones((3, 8, 8)), atol=1e-6)


def test_errors_are_clear():
    config = PreprocessConfig()
    with pytest.raises(DataError, match="no images"):
        preprocess_batch([], config)
    with pytest.raises(DataError, match="expected a PIL image"):
        preprocess_image(np.zeros((4, 4)), config)  # type: ignore[arg-type]
