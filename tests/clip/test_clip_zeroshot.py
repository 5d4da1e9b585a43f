"""Zero-shot classifier maths, its cache, top-k, and retrieval recall against brute-force counting."""

from __future__ import annotations

import numpy as np
import pytest

from zoo import zeroshot as zs
from zoo.errors import ConfigError


def fake_embed(texts: list[str]) -> np.ndarray:
    """Deterministic vectors per string (so a test knows every prompt's embedding)."""
    return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=6) for t in texts]).astype(np.float32)


def test_classifier_is_normalised_template_mean() -> None:
    names, templates = ["cat", "dog", "emu"], ["a {}.", "a photo of a {}", "{}"]
    weights = zs.build_classifier(fake_embed, names, templates)
    assert weights.shape == (6, 3)
    for c, name in enumerate(names):
        vectors = fake_embed([t.format(name) for t in templates])
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        mean = vectors.mean(0)
        np.testing.assert_allclose(weights[:, c], mean / np.linalg.norm(mean), rtol=1e-5)


def test_top_k_probabilities() -> None:
    weights = np.eye(4, 3, dtype=np.float32)
    images = np.array([[1, 0.1, 0, 0], [0, 0, 2, 0]], dtype=np.float32)
    preds = zs.top_k(images, weights, ["a", "b", "c"], k=5, scale=10.0)
    assert preds[0].labels[0] == "a" and preds[1].labels[0] == "c" and len(preds[0].labels) == 3
    unit = images[0] / np.linalg.norm(images[0])
    logits = 10 * unit[:3]
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(preds[0].probabilities, np.sort(expected)[::-1], rtol=1e-5)
    assert sum(preds[1].probabilities) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        zs.top_k(images, weights, ["a", "b"])


def test_bad_templates_and_names() -> None:
    with pytest.raises(ConfigError):
        zs.build_classifier(fake_embed, [], ["{}"])
    with pytest.raises(ConfigError):
        zs.build_classifier(fake_embed, ["cat"], ["no slot"])


def test_cache_builds_once_per_label_set() -> None:
    cache = zs.ClassifierCache(max_entries=2)
    calls = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return fake_embed(texts)

    first = cache.get("space-a", embed, ["cat", "dog"])
    again = cache.get("space-a", embed, ["cat", "dog"])
    assert again is first and cache.builds == 1 and not first.flags.writeable
    cache.get("space-b", embed, ["cat", "dog"])  # another embedding space is another classifier
    cache.get("space-a", embed, ["dog", "cat"])  # order matters: columns follow the names
    assert cache.builds == 3 and len(cache._items) == 2


def test_accuracies() -> None:
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    labels = np.array([0, 1, 1, 2])
    assert zs.accuracy(scores, labels, ks=(1, 2)) == {"top1": 0.5, "top2": 0.75}
    macro = zs.macro_accuracy(scores, labels, ks=(1,))
    assert macro["top1"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)


def test_retrieval_recall_brute_force() -> None:
    rng = np.random.default_rng(0)
    images, texts = rng.normal(size=(20, 8)), rng.normal(size=(45, 8))
    owner = np.concatenate([np.arange(20), rng.integers(0, 20, 25)])
    got = zs.retrieval_recall(images, texts, owner)
    ui = images / np.linalg.norm(images, axis=1, keepdims=True)
    ut = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    sims = ui @ ut.T
    for k in (1, 5, 10):
        i2t = np.mean([bool(set(np.argsort(-sims[i])[:k]) & set(np.flatnonzero(owner == i))) for i in range(20)])
        t2i = np.mean([owner[j] in np.argsort(-sims[:, j])[:k] for j in range(45)])
        assert got[f"i2t_r@{k}"] == pytest.approx(i2t) and got[f"t2i_r@{k}"] == pytest.approx(t2i)
    perfect = zs.retrieval_recall(ut[:20], ut[:20], np.arange(20))
    assert perfect["i2t_r@1"] == 1.0 and perfect["t2i_r@1"] == 1.0


def test_retrieval_chance_matches_simulation() -> None:
    rng = np.random.default_rng(1)
    owner = np.repeat(np.arange(30), 3)
    chance = zs.retrieval_chance(30, owner)
    sims = [zs.retrieval_recall(rng.normal(size=(30, 16)), rng.normal(size=(90, 16)), owner) for _ in range(200)]
    for key in ("i2t_r@1", "i2t_r@5", "t2i_r@5"):
        assert np.mean([s[key] for s in sims]) == pytest.approx(chance[key], abs=0.02)
