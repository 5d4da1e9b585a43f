"""Evaluation metrics against independent reference computations and known configurations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from training.config import EvalConfig
from training.evaluate import (
    alignment,
    embed_images,
    eval_views,
    evaluate_encoder,
    evaluate_features,
    few_shot_accuracy,
    knn_accuracy,
    knn_predict,
    linear_probe_accuracy,
    pixel_features,
    uniformity,
)
from zoo.data import ImageDataset
from zoo.encoders import build_encoder


def brute_force_knn(train, train_labels, test, k, temperature, classes):
    """DINO's weighted vote written out one query at a time, in float64 numpy."""
    def unit(v):
        return v / np.linalg.norm(v)

    predictions = []
    for query in test:
        sims = np.array([unit(query) @ unit(row) for row in train], dtype=np.float64)
        nearest = np.argsort(-sims)[:k]
        votes = np.zeros(classes)
        for i in nearest:
            votes[train_labels[i]] += math.exp(sims[i] / temperature)
        predictions.append(int(np.argmax(votes)))
    return np.array(predictions)


@pytest.mark.parametrize(("k", "temperature"), [(1, 0.07), (5, 0.07), (20, 0.5), (40, 0.1)])
def test_knn_matches_brute_force(k, temperature):
    rng = np.random.default_rng(k)
    train, test = rng.normal(size=(60, 8)).astype(np.float32), rng.normal(size=(25, 8)).astype(np.float32)
    labels = rng.integers(0, 4, size=60)
    expected = brute_force_knn(train, labels, test, min(k, 60), temperature, 4)
    assert np.array_equal(knn_predict(train, labels, test, k, temperature, num_classes=4, chunk=7), expected)


def test_knn_weighting_beats_majority_when_the_nearest_neighbour_is_much_closer():
    # two far neighbours of class 1 against one very close neighbour of class 0: weighting decides
    train = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8]], dtype=np.float32)
    labels = np.array([0, 1, 1])
    query = np.array([[1.0, 0.01]], dtype=np.float32)
    assert knn_predict(train, labels, query, k=3, temperature=0.07)[0] == 0
    assert knn_predict(train, labels, query, k=3, temperature=100.0)[0] == 1  # almost unweighted: majority


def _blobs(n_per_class=40, classes=3, dim=16, spread=0.2, seed=0, draw=0):
    """Gaussian blobs around centres fixed by ``seed``; ``draw`` picks the sample, so draws are held-out sets."""
    centres = np.random.default_rng(seed).normal(size=(classes, dim)) * 3
    rng = np.random.default_rng([seed, draw])
    x = np.concatenate([c + spread * rng.normal(size=(n_per_class, dim)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(classes), n_per_class)


def test_linear_probe_separates_separable_data_and_not_random_labels():
    x, y = _blobs()
    xt, yt = _blobs(draw=1)  # the same classes, other samples
    assert not np.isin(xt, x).any()
    assert linear_probe_accuracy(x, y, xt, yt) == 1.0
    rng = np.random.default_rng(1)
    noise, noise_test = rng.normal(size=(120, 16)), rng.normal(size=(120, 16))
    chance = linear_probe_accuracy(noise, rng.integers(0, 3, 120), noise_test, rng.integers(0, 3, 120))
    assert chance < 0.6


def test_few_shot_and_knn_on_held_out_samples():
    x, y = _blobs(classes=4)
    xt, yt = _blobs(classes=4, draw=1)
    assert few_shot_accuracy(x, y, xt, yt, shots=1, draws=3) == 1.0
    assert knn_accuracy(x, y, xt, yt, k=5) == 1.0
    # far-apart noise: labels that carry no information about the features score near chance
    rng = np.random.default_rng(2)
    shuffled = rng.permutation(y)
    assert knn_accuracy(x, shuffled, xt, yt, k=5) < 0.6
    assert few_shot_accuracy(x, shuffled, xt, yt, shots=1, draws=3) < 0.8


def test_alignment_known_pairs():
    z = torch.nn.functional.normalize(torch.randn(50, 8), dim=1)
    assert alignment(z, z) == pytest.approx(0.0, abs=1e-6)
    assert alignment(z, -z) == pytest.approx(4.0)  # antipodal pairs are 2 apart: 2² = 4
    orthogonal = torch.eye(2)
    assert alignment(orthogonal[:1], orthogonal[1:]) == pytest.approx(2.0)


def test_uniformity_known_configurations():
    same = torch.ones(30, 4)
    assert uniformity(same) == pytest.approx(0.0, abs=1e-6)
    # evenly spread points on the circle: E exp(-2|x-y|²) = e^-4 I0(4) for uniform angles
    angles = torch.arange(2000, dtype=torch.float64) * 2 * math.pi / 2000
    circle = torch.stack([angles.cos(), angles.sin()], dim=1)
    bessel_i0_4 = 11.301921952136330
    assert uniformity(circle) == pytest.approx(-4 + math.log(bessel_i0_4), abs=2e-3)
    assert uniformity(circle) < uniformity(same)


def test_eval_views_are_seeded_and_keep_shape():
    images = np.random.default_rng(0).integers(0, 255, size=(6, 12, 12, 1), dtype=np.uint8)
    a, b = eval_views(images, seed=3), eval_views(images, seed=3)
    assert a.shape == images.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, eval_views(images, seed=4))


def _dataset(split, n=40, labelled=True, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 40, size=(n, 8, 8, 1)).astype(np.uint8)
    images[labels == 1, :4] += 200
    return ImageDataset(name="toy", split=split, images=images, labels=labels if labelled else None,
                        class_names=["dark", "bright"] if labelled else None, captions=None, license="test",
                        source="generated in the test")


def test_evaluate_features_names_dataset_and_split():
    metrics = evaluate_features(pixel_features, _dataset("train"), _dataset("test", seed=1),
                                EvalConfig(few_shot=(1, 5), few_shot_draws=2))
    assert set(metrics) == {"knn_top1", "linear_top1", "fewshot1_top1", "fewshot5_top1", "alignment",
                            "uniformity", "effective_rank"}
    assert metrics["knn_top1"]["value"] == 1.0  # the two classes differ by a bright band
    assert metrics["knn_top1"]["dataset"] == "toy" and metrics["knn_top1"]["split"] == "test"
    assert metrics["knn_top1"]["train_split"] == "train"


def test_unlabelled_data_gets_label_free_metrics_only():
    metrics = evaluate_features(pixel_features, _dataset("train", labelled=False), _dataset("test", labelled=False))
    assert set(metrics) == {"alignment", "uniformity", "effective_rank"}


def test_encoder_embeddings_use_the_registry_preprocessing():
    torch.manual_seed(0)
    encoder = build_encoder("resnet_narrow", img_size=8, in_chans=1)
    images = _dataset("test").images
    assert np.allclose(embed_images(encoder, images, batch_size=16), encoder.embed_uint8(images), atol=1e-5)
    metrics = evaluate_encoder(encoder, _dataset("train"), _dataset("test", seed=1), EvalConfig(few_shot=()))
    assert 0.0 <= metrics["knn_top1"]["value"] <= 1.0 and metrics["effective_rank"]["value"] >= 1.0
