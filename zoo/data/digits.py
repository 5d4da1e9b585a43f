"""``digits``: scikit-learn's 1,797 handwritten 8×8 digits, the labelled set that is always installed.

The 0..16 ink levels are scaled to 0..255 and upsampled by nearest neighbour (16×16 by default) so
small convolutional stems have something to stride over. The split is stratified and seeded.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from zoo.data.dataset import ImageDataset
from zoo.data.registry import register_dataset
from zoo.errors import DataError

TEST_SIZE = 360  # 1,437 train / 360 test, the conventional 80/20 split of 1,797


def _upsample(images: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of ``[N, 8, 8]`` uint8 to ``[N, size, size]``."""
    if size % 8 == 0:
        k = size // 8
        return images.repeat(k, axis=1).repeat(k, axis=2)
    return np.stack(
        [np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.NEAREST)) for im in images]
    )


@register_dataset("digits", splits=("train", "test", "all"))
def build_digits(split: str, *, seed: int = 0, image_size: int = 16) -> ImageDataset:
    """Split the digits 1,437 / 360, stratified by class; ``all`` gives all 1,797."""
    if image_size < 8:
        raise DataError(f"digits: image_size must be >= 8, got {image_size}")
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    index = np.arange(len(labels))
    if split != "all":
        train, test = train_test_split(index, test_size=TEST_SIZE, stratify=labels, random_state=seed)
        index = np.sort(train if split == "train" else test)
    return ImageDataset(
        name="digits",
        split=split,
        images=_upsample(images[index], image_size)[..., None],
        labels=labels[index],
        class_names=[str(d) for d in range(10)],
        captions=None,
        license="BSD-3-Clause (as shipped with scikit-learn; UCI original: CC BY 4.0)",
        source="scikit-learn load_digits (UCI optical recognition of handwritten digits)",
    )
