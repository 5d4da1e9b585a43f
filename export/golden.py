"""The fixed inputs every export is checked on, and the images int8 calibration sees.

All of it is generated or bundled (``shapes`` is drawn with PIL from a seed, ``digits`` ships with
scikit-learn), so the same export on another machine is checked on the same pixels. Each set has one
job: *golden* images look like real data, *random* noise images probe inputs outside it, a labelled
*gallery* and *queries* (digits, split train/test) measure k-NN agreement, and *calibration* images
(drawn apart from the queries) give int8 its activation ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from zoo.config import PreprocessConfig
from zoo.data import load_dataset
from zoo.errors import DataError
from zoo.preprocess import preprocess_uint8
from zoo.tokenizer import EOT_ID, SOS_ID, encode_texts

SEED = 0
GOLDEN_IMAGE_SIZE = 64
EDGE_TEXTS = ("", "a", "an extremely long caption " * 20, "ÉMOJI ✨ and accents: café", "1 2 3 4 5")


@dataclass(frozen=True)
class ParitySizes:
    """How many inputs of each kind the gate uses; defaults keep a ViT-S/16 export under a few minutes."""

    golden: int = 32
    random: int = 16
    gallery: int = 500
    queries: int = 200
    calibration: int = 128


@dataclass(frozen=True)
class ImageSets:
    """Preprocessed float32 ``[N, C, H, W]`` inputs for one encoder, with the labels k-NN needs."""

    golden: np.ndarray
    random: np.ndarray
    gallery: np.ndarray
    gallery_labels: np.ndarray
    queries: np.ndarray
    query_labels: np.ndarray
    calibration: np.ndarray
    captions: list[str]


def _sample(n_total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n_total, size=min(n, n_total), replace=False))


def image_sets(preprocess: PreprocessConfig, sizes: ParitySizes | None = None) -> ImageSets:
    """Build every image set for an encoder's preprocessing (grey or colour, any resolution)."""
    sizes = sizes or ParitySizes()
    rng = np.random.default_rng(SEED)
    shapes = load_dataset("shapes", "test", seed=SEED, n=sizes.golden, image_size=GOLDEN_IMAGE_SIZE)
    channels, height, width = preprocess.input_size
    noise = rng.integers(0, 256, size=(sizes.random, height, width, channels), dtype=np.uint8)
    train, test = load_dataset("digits", "train", seed=SEED), load_dataset("digits", "test", seed=SEED)
    gallery = _sample(len(train), sizes.gallery, rng)
    queries = _sample(len(test), sizes.queries, rng)
    rest = np.setdiff1d(np.arange(len(train)), gallery)
    calib_digits = train.images[rng.choice(rest, size=min(sizes.calibration // 2, len(rest)), replace=False)]
    calib_shapes = load_dataset("shapes", "train", seed=SEED, n=max(1, sizes.calibration - len(calib_digits)),
                                image_size=GOLDEN_IMAGE_SIZE)
    if train.labels is None or test.labels is None:
        raise DataError("digits came without labels; the k-NN agreement needs a labelled set")
    return ImageSets(
        golden=preprocess_uint8(shapes.images, preprocess),
        random=preprocess_uint8(noise, preprocess),
        gallery=preprocess_uint8(train.images[gallery], preprocess),
        gallery_labels=train.labels[gallery],
        queries=preprocess_uint8(test.images[queries], preprocess),
        query_labels=test.labels[queries],
        calibration=np.concatenate([preprocess_uint8(calib_digits, preprocess),
                                    preprocess_uint8(calib_shapes.images, preprocess)]),
        captions=[c[0] for c in shapes.captions or [[""]] * len(shapes)],
    )


def text_inputs(tokenizer: Tokenizer, captions: list[str], context_length: int, n_random: int = 16,
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Token ``(ids, mask)`` pairs: golden captions plus edge cases, and random well-formed sequences.

    Random sequences are ``[SOS] random tokens [EOT]`` of random lengths up to the context, so every
    position, padding amount and vocabulary region is exercised, not only the words of the captions.
    """
    rng = np.random.default_rng(SEED + 1)
    golden = encode_texts(tokenizer, [*captions, *EDGE_TEXTS], context_length)
    vocab = tokenizer.get_vocab_size()
    ids = np.zeros((n_random, context_length), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, length in enumerate(rng.integers(2, context_length + 1, size=n_random)):
        ids[row, :length] = rng.integers(4, vocab, size=length)
        ids[row, 0], ids[row, length - 1] = SOS_ID, EOT_ID
        mask[row, :length] = 1
    return {"golden": golden, "random": (ids, mask)}
