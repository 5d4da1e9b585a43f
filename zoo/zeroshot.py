"""Zero-shot classification and retrieval metrics in NumPy, for the torch and ONNX backends alike.

The classifier follows the CLIP paper (§3.1.4): every class name goes through every prompt template,
the template embeddings of a class are averaged and re-normalised, and the ``[D, C]`` matrix is built
once per label set and cached. Probabilities are ``softmax(scale · cosine)`` with the model's own
``logit_scale``. Nothing here imports torch: a text tower is any ``texts → [N, D]`` function.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from zoo.errors import ConfigError

EmbedTexts = Callable[[Sequence[str]], np.ndarray]

#: A few of the CLIP paper's ImageNet templates that fit any object.
DEFAULT_TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a drawing of a {}.", "{}")


def _unit(x: np.ndarray, axis: int) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return np.asarray(x / np.maximum(norm, 1e-12), dtype=np.float32)


def build_classifier(embed_texts: EmbedTexts, class_names: Sequence[str],
                     templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
    """The ``[D, C]`` zero-shot weights: per class, the re-normalised mean of its prompt embeddings.

    Args:
        embed_texts: The text tower: strings → ``[N, D]`` (normalised or not; each row is normalised here).
        class_names: One name per class, in label order.
        templates: Format strings with one ``{}``; all are encoded in one batch.
    """
    if not class_names:
        raise ConfigError("a zero-shot classifier needs at least one class name")
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise ConfigError(f"every template needs exactly one '{{}}', got {list(templates)}")
    prompts = [t.format(name) for name in class_names for t in templates]
    vectors = _unit(np.asarray(embed_texts(prompts), dtype=np.float32), axis=1)
    per_class = vectors.reshape(len(class_names), len(templates), -1).mean(axis=1)
    return np.ascontiguousarray(_unit(per_class, axis=1).T)


def logits(image_embeddings: np.ndarray, classifier: np.ndarray, scale: float = 100.0) -> np.ndarray:
    """``scale · cosine`` between ``[N, D]`` images and the ``[D, C]`` classifier."""
    return np.asarray(scale * _unit(np.asarray(image_embeddings, np.float32), axis=1) @ classifier, np.float32)


def softmax(x: np.ndarray) -> np.ndarray:
    """Row softmax, stable for large logits."""
    shifted = np.exp(x - x.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), np.float32)


@dataclass(frozen=True)
class Prediction:
    """Top-k labels of one image, best first, with their probabilities."""

    labels: tuple[str, ...]
    indices: tuple[int, ...]
    probabilities: tuple[float, ...]


def top_k(image_embeddings: np.ndarray, classifier: np.ndarray, class_names: Sequence[str], k: int = 5,
          scale: float = 100.0) -> list[Prediction]:
    """The ``k`` most probable classes of each image (``k`` capped at the number of classes)."""
    if classifier.shape[1] != len(class_names):
        raise ConfigError(f"classifier has {classifier.shape[1]} classes but {len(class_names)} names were given")
    probs = softmax(logits(image_embeddings, classifier, scale))
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [Prediction(tuple(class_names[j] for j in row), tuple(int(j) for j in row),
                       tuple(float(p) for p in probs[i, row])) for i, row in enumerate(order)]


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``[N]``: whether each true label is among the ``k`` highest scores (ties count against)."""
    true = scores[np.arange(len(labels)), labels][:, None]
    return np.asarray((scores > true).sum(axis=1) < k)


def accuracy(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Per-sample top-k accuracy."""
    labels = np.asarray(labels, dtype=np.int64)
    return {f"top{k}": float(topk_correct(scores, labels, k).mean()) for k in ks}


def macro_accuracy(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracy averaged over classes (each class present weighs the same, however many images)."""
    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    out = {}
    for k in ks:
        correct = topk_correct(scores, labels, k)
        out[f"top{k}"] = float(np.mean([correct[labels == c].mean() for c in present]))
    return out


def retrieval_recall(image_embeddings: np.ndarray, text_embeddings: np.ndarray, text_to_image: np.ndarray,
                     ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways when each image has several captions (``text_to_image[j]`` = image of text ``j``).

    image→text: an image is a hit if *any* of its captions is in its top k texts. text→image: a text is
    a hit if its own image is in its top k images. Ties count against the query.
    """
    owner = np.asarray(text_to_image, dtype=np.int64)
    sims = _unit(np.asarray(image_embeddings, np.float32), 1) @ _unit(np.asarray(text_embeddings, np.float32), 1).T
    own = owner[None, :] == np.arange(len(sims))[:, None]  # [N_img, N_txt]
    best_own = np.where(own, sims, -np.inf).max(axis=1, keepdims=True)
    rank_i2t = (np.where(own, -np.inf, sims) >= best_own).sum(axis=1)  # other texts at least as close
    true_t2i = sims[owner, np.arange(len(owner))]
    rank_t2i = (true_t2i[:, None] < sims.T).sum(axis=1)
    out = {}
    for k in ks:
        out[f"i2t_r@{k}"] = float((rank_i2t < k).mean())
        out[f"t2i_r@{k}"] = float((rank_t2i < k).mean())
    return out


def retrieval_chance(n_images: int, text_to_image: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Expected recall@k of random scores, the baseline each figure is compared with."""
    counts = np.bincount(np.asarray(text_to_image, dtype=np.int64), minlength=n_images)[:n_images]
    n_texts = int(counts.sum())
    out = {}
    for k in ks:
        # image→text: P(at least one of the image's c captions among k random texts out of n_texts)
        miss = np.ones(n_images)
        for j in range(min(k, n_texts)):
            miss *= np.clip((n_texts - counts - j) / (n_texts - j), 0.0, 1.0)
        out[f"i2t_r@{k}"] = float(np.mean(1 - miss))
        out[f"t2i_r@{k}"] = min(k, n_images) / n_images
    return out


class ClassifierCache:
    """Zero-shot classifiers keyed by (embedding space, templates, class names), least recently used out.

    The service keeps one: building a classifier encodes ``C × T`` prompts, classifying one image only
    costs a ``[D] × [D, C]`` product.
    """

    def __init__(self, max_entries: int = 32) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0

    @staticmethod
    def key(space: str, class_names: Sequence[str], templates: Sequence[str]) -> str:
        """A digest of everything the classifier depends on."""
        blob = "\x1f".join([space, *templates, "\x1e", *class_names])
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, space: str, embed_texts: EmbedTexts, class_names: Sequence[str],
            templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
        """The cached classifier for this label set, built on first request (read-only array)."""
        key = self.key(space, class_names, templates)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        weights = build_classifier(embed_texts, class_names, templates)
        weights.setflags(write=False)
        with self._lock:
            self.builds += 1
            self._items[key] = weights
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return weights
