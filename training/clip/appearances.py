"""Appearance views: the fit's captioned drawings rendered another way, under the same captions.

The default's captioned images are colour drawings on white. Many images people search or label are
not: Fashion-MNIST and scikit-learn's digits are light shapes on black, scans and sketches are grey.
A concept's caption does not change when its drawing is shown in grey or with its luminance
inverted, so such renderings are extra views of the same image (each fit step picks one view per
image at random, like the mild crop views of :mod:`training.clip.locked_fit`), and the projection
learns to name the concept whichever way round it is drawn.

Only sets whose captions do not name colours get these views: ``shapes`` captions say "a red
circle", which a grey rendering would contradict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from zoo.naming import NameRegistry

Renderer = Callable[[np.ndarray], np.ndarray]
APPEARANCES: NameRegistry[Renderer] = NameRegistry("appearance")
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as torchvision's rgb_to_grayscale
COLOUR_FREE_SETS = ("emoji",)  # captioned sets whose captions hold whatever the rendering (see the docstring)


@APPEARANCES.register("plain")
def plain(images: np.ndarray) -> np.ndarray:
    """The images as they are."""
    return images


@APPEARANCES.register("grey")
def grey(images: np.ndarray) -> np.ndarray:
    """Luma in every channel (uint8 ``[N, H, W, C]`` in and out)."""
    if images.shape[-1] == 1:
        return images
    luma = np.rint(images[..., :3].astype(np.float64) @ LUMA).clip(0, 255).astype(np.uint8)
    return np.repeat(luma[..., None], images.shape[-1], axis=-1)


@APPEARANCES.register("grey-inverted")
def grey_inverted(images: np.ndarray) -> np.ndarray:
    """Light on dark: 255 minus :func:`grey` (a drawing on white becomes a silhouette on black)."""
    return 255 - grey(images)


def render(images: np.ndarray, appearance: str) -> np.ndarray:
    """``images`` drawn as the registered ``appearance``."""
    return APPEARANCES.get(appearance)(images)


def check_appearances(appearances: Sequence[str]) -> tuple[str, ...]:
    """The names as a tuple, ``plain`` first (view 0 is the plain image: standardisation and search use it)."""
    names = tuple(appearances)
    for name in names:
        APPEARANCES.get(name)
    if not names or names[0] != "plain" or len(set(names)) != len(names):
        raise ValueError(f"appearances must start with 'plain' and name each view once, got {list(names)}")
    return names
