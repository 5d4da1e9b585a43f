"""The tokenized captions of a dataset, so the generic trainer's ``batch["index"]`` finds its texts.

The trainer only moves images and their dataset indices. A :class:`CaptionTable` holds every caption
of every image tokenized once (``ids``, ``mask``: ``[M, L]``), with CSR offsets from image to caption
rows; each step picks one caption per image — a different phrasing each epoch, reproducibly from
``(seed, step)``. Images without a usable caption (none, or only whitespace) are counted, and a step
leaves them out rather than failing. ``keys`` give each caption a positive class for the loss: equal
texts (``"caption"``), equal dataset labels (``"label"``), or none (plain CLIP).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import Tensor

from zoo.data import ImageDataset
from zoo.data.emoji_catalog import describe
from zoo.errors import DataError
from zoo.tokenizer import encode_texts

log = logging.getLogger(__name__)
POSITIVES = ("none", "caption", "label")


@dataclass
class CaptionTable:
    """Tokenized captions with image → caption-row offsets.

    Attributes:
        ids: int64 ``[M, L]`` token ids of every caption.
        mask: int64 ``[M, L]`` attention mask.
        offsets: int64 ``[N + 1]``; image ``i`` owns rows ``offsets[i]:offsets[i + 1]``.
        keys: int64 ``[M]`` positive-class key of each caption (``-1 - row`` when unique).
        texts: The caption strings, row order.
        info: Counts worth reporting (images without captions, truncated captions).
    """

    ids: Tensor
    mask: Tensor
    offsets: Tensor
    keys: Tensor
    texts: list[str]
    info: dict[str, int] = field(default_factory=dict)

    @property
    def counts(self) -> Tensor:
        """Captions per image."""
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def has_caption(self) -> Tensor:
        """Boolean ``[N]``: images with at least one caption."""
        return self.counts > 0

    @property
    def owner(self) -> np.ndarray:
        """Image index of every caption row (for retrieval metrics)."""
        return np.repeat(np.arange(len(self.counts)), self.counts.numpy())

    def pick(self, index: Tensor, step: int, seed: int = 0) -> Tensor:
        """One caption row per image in ``index`` (all must have captions), drawn from ``(seed, step)``."""
        counts = self.counts[index]
        if bool((counts == 0).any()):
            raise DataError("pick() got images without captions; filter them with has_caption first")
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        draw = torch.randint(0, 2**31 - 1, (len(index),), generator=generator)
        return self.offsets[index] + draw % counts


def caption_lists(dataset: ImageDataset) -> list[list[str]]:
    """The dataset's captions with blanks dropped; an uncaptioned dataset is an error naming the fix."""
    if dataset.captions is None:
        raise DataError(f"{dataset.name}/{dataset.split} has no captions; CLIP needs an image–caption set "
                        "(shapes, emoji, or captions:FILE)")
    return [[c.strip() for c in captions if isinstance(c, str) and c.strip()] for captions in dataset.captions]


def build_caption_table(dataset: ImageDataset, tokenizer: Tokenizer, context_length: int,
                        positives: str = "caption", captions: Sequence[Sequence[str]] | None = None) -> CaptionTable:
    """Tokenize every caption of ``dataset`` (or the given ``captions``, one list per image)."""
    if positives not in POSITIVES:
        raise DataError(f"positives must be one of {POSITIVES}, got {positives!r}")
    lists = [list(c) for c in captions] if captions is not None else caption_lists(dataset)
    if len(lists) != len(dataset):
        raise DataError(f"{len(lists)} caption lists for {len(dataset)} images")
    texts = [text for per_image in lists for text in per_image]
    if not texts:
        raise DataError(f"{dataset.name}/{dataset.split}: no image has a usable caption")
    counts = torch.tensor([len(c) for c in lists], dtype=torch.int64)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    ids, mask = encode_texts(tokenizer, texts, context_length)
    full = int((mask[:, -1] == 1).sum())
    owner = np.repeat(np.arange(len(lists)), counts.numpy())
    if positives == "caption":
        _, keys = np.unique(np.asarray([t.lower() for t in texts]), return_inverse=True)
    elif positives == "label":
        if dataset.labels is None:
            raise DataError(f"positives='label' needs labels; {dataset.name} has none")
        keys = dataset.labels[owner]
    else:
        keys = -1 - np.arange(len(texts))
    uncaptioned = int((counts == 0).sum())
    if uncaptioned:
        log.warning("%s/%s: %d of %d images have no caption and are left out of CLIP training",
                    dataset.name, dataset.split, uncaptioned, len(lists))
    info = {"images": len(lists), "captions": len(texts), "images_without_captions": uncaptioned,
            "captions_filling_context": full}
    return CaptionTable(torch.from_numpy(ids), torch.from_numpy(mask), offsets,
                        torch.as_tensor(keys, dtype=torch.int64), texts, info)


def _words(label: str) -> str:
    """``"face-smiling"`` → ``"face smiling"``, ``"Smileys & Emotion"`` → ``"smileys emotion"``."""
    return re.sub(r"[^a-z0-9]+", " ", label.lower()).strip()


def emoji_phrasings(meta: Mapping[str, str], captions: Sequence[str] = (), *, subgroup: bool = False) -> list[str]:
    """More captions for one emoji, from its own catalogue fields (``zoo.data.emoji`` meta).

    The dataset's captions name the exact emoji ("a man cook with dark skin tone"); zero-shot prompts
    name a concept ("an emoji of a man cook"). Adding the concept bare and in the prompts' wording
    lets the fit learn the concept's phrasing, not only the skin-tone variant's. ``subgroup`` adds the
    group and subgroup ("a man cook, an emoji of the person role kind"), which names the kind of
    picture; in ``benchmarks/clip_quality.py`` it did not raise validation zero-shot, so it is off.
    """
    concept = describe(meta["concept"], [])
    out = [*captions, concept, f"an emoji of {concept}", f"a picture of {concept}", meta["name"]]
    if subgroup:
        kind, group = _words(meta["subgroup"]), _words(meta["group"])
        out += [f"{concept}, an emoji of the {kind} kind", f"a {group} emoji of {concept}"]
    return list(dict.fromkeys(c for c in out if c.strip()))


def richer_captions(dataset: ImageDataset, *, subgroup: bool = False) -> list[list[str]]:
    """Every image's captions plus :func:`emoji_phrasings` for ``emoji``; other datasets unchanged."""
    lists = caption_lists(dataset)
    if dataset.name != "emoji" or dataset.meta is None:
        return lists
    return [emoji_phrasings(meta, captions, subgroup=subgroup) for meta, captions in zip(dataset.meta, lists,
                                                                                         strict=True)]


def concat_tables(tables: Sequence[CaptionTable]) -> CaptionTable:
    """One table over the images of several datasets, in order; positive keys kept apart per table.

    Keys of different tables must never collide (a shapes caption and an emoji concept with the same
    integer would become positives of each other): non-negative keys are shifted past the previous
    tables' keys, unique (negative) keys by the previous tables' caption rows.
    """
    if not tables:
        raise DataError("concat_tables needs at least one table")
    if len({t.ids.shape[1] for t in tables}) != 1:
        raise DataError("caption tables of different context lengths cannot be joined")
    keys, offsets, key_base, row_base = [], [torch.zeros(1, dtype=torch.int64)], 0, 0
    for table in tables:
        shifted = torch.where(table.keys >= 0, table.keys + key_base, table.keys - row_base)
        keys.append(shifted)
        offsets.append(table.offsets[1:] + row_base)
        key_base += int(table.keys.max().clamp(min=-1)) + 1
        row_base += len(table.ids)
    info: dict[str, int] = {}
    for table in tables:
        for name, value in table.info.items():
            info[name] = info.get(name, 0) + value
    return CaptionTable(torch.cat([t.ids for t in tables]), torch.cat([t.mask for t in tables]), torch.cat(offsets),
                        torch.cat(keys), [text for t in tables for text in t.texts], info)
