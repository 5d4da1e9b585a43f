"""The one in-memory shape every dataset takes, whatever its source.

Training, evaluation and the contact sheet only ever see :class:`ImageDataset`, so a new source
(generated, a Debian package, a user's folder) needs no change downstream. Arrays are plain numpy so
the cache can store them without pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image

from zoo.errors import DataError


@dataclass
class ImageDataset:
    """Images of one split, with whatever labels, captions and provenance the source has.

    Attributes:
        name: Registry name (or the ``folder:``/``captions:`` reference) it was loaded from.
        split: ``"train"``, ``"test"``, ``"all"``, ``"heldout"`` ... as the source defines them.
        images: ``uint8 [N, H, W, C]`` with ``C`` = 1 (grey) or 3 (RGB), all one size.
        labels: ``int64 [N]`` indices into ``class_names``, or ``None`` for unlabelled data.
        class_names: Names of the label indices, or ``None``.
        captions: One list of captions per image (several allowed), or ``None``.
        license: Licence of the images (and captions), so derived weights can state it.
        source: Where the data came from, human-readable.
        meta: Optional per-image metadata (shape/colour for ``shapes``, group/concept for ``emoji``).
        info: Dataset-level facts found while building it, e.g. how many files were skipped.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    captions: list[list[str]] | None
    license: str
    source: str
    meta: list[dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check the contract once here, so consumers never need to."""
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] not in (1, 3):
            raise DataError(
                f"{self.name}: images must be uint8 [N, H, W, 1|3], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        n = len(self.images)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if self.labels.shape != (n,):
                raise DataError(f"{self.name}: {self.labels.shape[0]} labels for {n} images")
        for what, values in (("captions", self.captions), ("meta", self.meta)):
            if values is not None and len(values) != n:
                raise DataError(f"{self.name}: {len(values)} {what} for {n} images")

    def __len__(self) -> int:
        """Number of images."""
        return len(self.images)

    def pil(self, i: int) -> Image.Image:
        """Image ``i`` as a PIL image (mode ``L`` or ``RGB``), for viewing or PIL-based transforms."""
        array = self.images[i]
        if array.shape[-1] == 1:
            return Image.fromarray(array[..., 0], mode="L")
        return Image.fromarray(array, mode="RGB")

    def subset(self, idx: ArrayLike) -> ImageDataset:
        """A new dataset holding the images at ``idx`` (integer indices or a boolean mask).

        ``class_names`` is kept whole so labels keep their meaning across subsets.
        """
        index = np.asarray(idx)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = index.astype(np.int64).reshape(-1)

        def pick(values: list[Any] | None) -> list[Any] | None:
            return None if values is None else [values[i] for i in index]

        return ImageDataset(
            name=self.name,
            split=self.split,
            images=self.images[index],
            labels=None if self.labels is None else self.labels[index],
            class_names=self.class_names,
            captions=pick(self.captions),
            license=self.license,
            source=self.source,
            meta=pick(self.meta),
            info=dict(self.info),
        )
