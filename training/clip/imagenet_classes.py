"""The 1,000 ImageNet classes an ImageNet image tower already knows: their names and its classifier.

EfficientNet-Lite0's classifier (``classifier.weight`` ``[1000, 1280]``, ``classifier.bias``, in the
converted weights of :mod:`zoo.pretrained`) turns a photograph's pooled features into ImageNet logits,
75 % top-1. timm ships each class's WordNet lemmas ("tabby, tabby cat") and definition ("a cat with a
grey or tawny coat mottled with black") as :class:`timm.data.ImageNetInfo`. The default CLIP's
:class:`zoo.concepts.ConceptHead` needs both: the classifier, and each class's name embedded by the
text tower in the same prompts the service builds its zero-shot classifiers with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.data import ImageNetInfo
from torch import Tensor

from training.clip.features import text_trunk_features
from zoo.clip import ClipModel
from zoo.pretrained import efficientnet_lite0_state
from zoo.zeroshot import DEFAULT_TEMPLATES

MAX_LEMMAS = 3


@dataclass(frozen=True)
class ImagenetClass:
    """One ImageNet-1k class: WordNet synset id, lemmas (most common first) and definition."""

    synset: str
    lemmas: tuple[str, ...]
    definition: str


def imagenet_classes() -> list[ImagenetClass]:
    """The 1,000 classes in the classifier's order."""
    info = ImageNetInfo()
    out = []
    for index in range(info.num_classes()):
        synset = info.index_to_label_name(index)
        lemmas, _, definition = info.index_to_description(index, detailed=True).partition(": ")
        names = tuple(dict.fromkeys(n.strip() for n in lemmas.split(",") if n.strip()))
        out.append(ImagenetClass(synset, names, definition.strip()))
    return out


def class_captions(cls: ImagenetClass, templates: tuple[str, ...] = DEFAULT_TEMPLATES) -> list[str]:
    """Every template for the first :data:`MAX_LEMMAS` lemmas, and the definition with the first lemma.

    Several lemmas because the first is often the rare one ("tabby" before "tabby cat"); the
    definition because its head noun is often the everyday word ("a cat with ...").
    """
    out = [t.format(name) for name in cls.lemmas[:MAX_LEMMAS] for t in templates]
    if cls.definition:
        out += [f"{cls.lemmas[0]}: {cls.definition}", f"a photo of a {cls.lemmas[0]}, {cls.definition}"]
    return list(dict.fromkeys(out))


def lite0_classifier() -> tuple[Tensor, Tensor]:
    """EfficientNet-Lite0's ImageNet classifier ``(weight [1000, 1280], bias [1000])``, float32."""
    state = efficientnet_lite0_state()
    return state["classifier.weight"].float(), state["classifier.bias"].float()


@torch.inference_mode()
def class_embeddings(model: ClipModel, classes: list[ImagenetClass]) -> Tensor:
    """``[C, D]``: per class, the re-normalised mean of its captions' unit embeddings in ``model``'s joint space.

    The same reduction as :func:`zoo.zeroshot.build_classifier`, so a class reads as a label would.
    The locked text trunk's features come from the on-disk cache (:func:`text_trunk_features`).
    """
    captions = [class_captions(c) for c in classes]
    texts = [t for group in captions for t in group]
    projection: Any = model.text.tower.projection  # a Linear in every text tower with a joint space
    embedded = F.normalize(projection(text_trunk_features(model, texts)), dim=-1)
    owner = torch.repeat_interleave(torch.arange(len(classes)), torch.tensor([len(g) for g in captions]))
    summed = torch.zeros(len(classes), embedded.shape[1]).index_add_(0, owner, embedded)
    return F.normalize(summed, dim=-1)
