"""Zero-shot and retrieval figures of a CLIP pair on held-out ``shapes`` and ``emoji`` images.

Shared by ``benchmarks/clip_quality.py`` (which prints them as a table) and
:mod:`training.clip.default` (which stores them in the saved entry's config, so its model card shows
them). Evaluation images are never training images: ``shapes`` test images come from another random
stream, and the emoji ``heldout`` split holds concept *families* that never occur in training. Emoji
zero-shot is per concept (macro: every concept weighs the same, so the many skin-tone variants of a
few people emoji do not dominate) as well as per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo import zeroshot as zs
from zoo.clip import ClipModel
from zoo.data import ImageDataset
from zoo.data.emoji_catalog import describe
from zoo.data.shapes import COLOURS, POSITIONS, SHAPES
from zoo.errors import DataError

EMOJI_TEMPLATES = ("an emoji of {}", "{}", "a picture of {}")
Row = tuple[str, str, str]


def shapes_tasks(test: ImageDataset) -> list[tuple[str, list[str], tuple[str, ...], np.ndarray]]:
    """(task, class names, templates, labels): each attribute, prompts ensembled over the other attributes."""
    meta = test.meta or []
    shapes, colours, positions = list(SHAPES), list(COLOURS), list(POSITIONS)
    where = [POSITIONS[p][1] for p in positions]
    composed = [f"{c} {s}" for c in colours for s in shapes]
    return [
        ("shape", shapes, tuple(f"a {c} {{}}" for c in colours), np.array([shapes.index(m["shape"]) for m in meta])),
        ("colour", colours, tuple(f"a {{}} {s}" for s in shapes), np.array([colours.index(m["colour"]) for m in meta])),
        ("position", where, tuple(f"a {s} {{}}" for s in shapes),
         np.array([positions.index(m["position"]) for m in meta])),
        ("composed", composed, ("a {}", "a picture of a {}"),
         np.array([composed.index(f"{m['colour']} {m['shape']}") for m in meta])),
    ]


def zero_shot_scores(model: ClipModel, test: ImageDataset, image_emb: np.ndarray) -> dict[str, dict[str, Any]]:
    """Zero-shot top-1/top-5 per task: ``{task: {"top1", "top5", "classes", "per"}}``.

    ``shapes`` gives one task per attribute plus the composed one; ``emoji`` gives ``heldout_macro``
    (per concept) and ``heldout_image`` (per image), prompts built from the concept names alone.
    """
    scale = float(model.scale().detach())
    if test.name == "shapes":
        out = {}
        for task, names, templates, labels in shapes_tasks(test):
            scores = zs.logits(image_emb, zs.build_classifier(model.embed_texts, names, templates), scale)
            out[task] = {**zs.accuracy(scores, labels), "classes": len(names), "per": "image"}
        return out
    if test.labels is None:
        raise DataError(f"zero-shot scores need a labelled test set; {test.name!r} has no labels")
    names = [describe(c, []) for c in test.class_names or []]
    scores = zs.logits(image_emb, zs.build_classifier(model.embed_texts, names, EMOJI_TEMPLATES), scale)
    return {"heldout_macro": {**zs.macro_accuracy(scores, test.labels), "classes": len(names), "per": "concept"},
            "heldout_image": {**zs.accuracy(scores, test.labels), "classes": len(names), "per": "image"}}


def zero_shot_rows(model: ClipModel, test: ImageDataset, image_emb: np.ndarray) -> list[Row]:
    """Table rows (task, figures, chance) for the dataset's zero-shot tasks."""
    rows = []
    for task, got in zero_shot_scores(model, test, image_emb).items():
        c = got["classes"]
        if test.name == "shapes":
            label, chance = f"zero-shot {task} ({c} classes)", f"{1 / c:.1%} / {min(5, c) / c:.1%}"
        elif task == "heldout_macro":
            label, chance = f"zero-shot held-out concepts, macro ({c})", f"{1 / c:.2%} / {5 / c:.2%}"
        else:
            label, chance = f"zero-shot held-out, per image ({len(test)})", f"{1 / c:.2%} / {5 / c:.2%}"
        rows.append((label, f"top1 {got['top1']:.1%}  top5 {got['top5']:.1%}", chance))
    return rows


def retrieval_rows(model: ClipModel, test: ImageDataset, image_emb: np.ndarray) -> list[Row]:
    """Recall@1/5/10 both ways over the test captions (several per image), with chance."""
    captions = [[c for c in cs if c.strip()] for cs in test.captions or []]
    texts = [c for cs in captions for c in cs]
    owner = np.repeat(np.arange(len(captions)), [len(cs) for cs in captions])
    got = zs.retrieval_recall(image_emb, model.embed_texts(texts), owner)
    chance = zs.retrieval_chance(len(captions), owner)
    rows = []
    for way, label in (("i2t", "image→text"), ("t2i", "text→image")):
        figures = "  ".join(f"R@{k} {got[f'{way}_r@{k}']:.1%}" for k in (1, 5, 10))
        base = " / ".join(f"{chance[f'{way}_r@{k}']:.1%}" for k in (1, 5, 10))
        rows.append((f"{label} ({len(captions)} img, {len(texts)} txt)", figures, base))
    return rows


def evaluate(model: ClipModel, test: ImageDataset) -> list[Row]:
    """Every row for one trained model."""
    model.eval()
    image_emb = model.embed_uint8(test.images)
    return zero_shot_rows(model, test, image_emb) + retrieval_rows(model, test, image_emb)


def zero_shot_metrics(model: ClipModel, tests: list[ImageDataset]) -> dict[str, dict[str, Any]]:
    """Config metrics (``{"value", "dataset", "split", "task", ...}``, values as fractions) for a model card."""
    model.eval()
    metrics: dict[str, dict[str, Any]] = {}
    for test in tests:
        image_emb = model.embed_uint8(test.images)
        for task, got in zero_shot_scores(model, test, image_emb).items():
            classes = got["classes"]
            for k in (1, 5):
                metrics[f"zeroshot_{test.name}_{task}_top{k}"] = {
                    "value": round(float(got[f"top{k}"]), 4), "dataset": test.name, "split": test.split,
                    "task": "zero-shot-image-classification", "classes": classes, "per": got["per"],
                    "chance": round(min(k, classes) / classes, 4)}
    return metrics
