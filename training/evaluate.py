"""Evaluation of frozen features: weighted k-NN, linear probe, few-shot, alignment/uniformity, effective rank.

Every metric takes plain feature arrays, so an encoder, a randomly initialised twin and raw pixels are
measured by the same code (:func:`evaluate_features` with a different ``featurize``). Encoders are
embedded with the registry's own preprocessing (:func:`zoo.preprocess.preprocess_uint8`), so the figures
describe the vectors a user of the saved entry will get.

References: k-NN as in DINO (Caron et al. 2021, weighted vote ``exp(s/T)``, k=20, T=0.07); alignment and
uniformity from Wang & Isola (2020, eq. 4-5, α=2, t=2); effective rank from RankMe (Garrido et al. 2023).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import Tensor

from training.config import EvalConfig
from training.diagnostics import effective_rank
from zoo.data import ImageDataset
from zoo.encoders import ImageEncoder
from zoo.errors import DataError
from zoo.preprocess import preprocess_uint8

log = logging.getLogger(__name__)
Featurize = Callable[[np.ndarray], np.ndarray]


@torch.inference_mode()
def embed_images(encoder: ImageEncoder, images: np.ndarray, batch_size: int = 512, bf16: bool = False) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` → float32 ``[N, D]`` through the encoder's own preprocessing and contract."""
    encoder.eval()
    device = next(encoder.parameters()).device
    chunks = []
    for i in range(0, len(images), batch_size):
        pixels = torch.from_numpy(preprocess_uint8(images[i : i + batch_size], encoder.config.preprocess))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            chunks.append(encoder(pixels.to(device)).float().cpu())
    return torch.cat(chunks).numpy()


def pixel_features(images: np.ndarray) -> np.ndarray:
    """Raw pixels as vectors (the baseline an encoder must beat)."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def knn_predict(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, k: int = 20,
                temperature: float = 0.07, num_classes: int | None = None, chunk: int = 1024) -> np.ndarray:
    """Weighted k-NN on cosine similarity: each of the ``k`` neighbours votes ``exp(sim / T)`` for its class."""
    if len(train) == 0:
        raise DataError("k-NN needs at least one training feature")
    classes = int(num_classes or train_labels.max() + 1)
    bank = F.normalize(torch.from_numpy(train).float(), dim=1)
    labels = torch.from_numpy(train_labels).long()
    k = min(k, len(train))
    out = []
    for i in range(0, len(test), chunk):
        query = F.normalize(torch.from_numpy(test[i : i + chunk]).float(), dim=1)
        sims, idx = (query @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(query), classes).scatter_add_(1, labels[idx], (sims / temperature).exp())
        out.append(votes.argmax(dim=1))
    return torch.cat(out).numpy()


def knn_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
                 k: int = 20, temperature: float = 0.07) -> float:
    """Top-1 accuracy of :func:`knn_predict`."""
    num_classes = int(max(train_labels.max(), test_labels.max()) + 1)
    return float((knn_predict(train, train_labels, test, k, temperature, num_classes) == test_labels).mean())


def linear_probe_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
                          c: float = 1.0, max_iter: int = 1000) -> float:
    """Logistic regression on standardised frozen features; top-1 accuracy on the test features."""
    scaler = StandardScaler().fit(train)
    model = LogisticRegression(C=c, max_iter=max_iter)
    model.fit(scaler.transform(train), train_labels)
    return float(model.score(scaler.transform(test), test_labels))


def few_shot_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray,
                      shots: int, draws: int = 3, seed: int = 0) -> float:
    """Mean accuracy of logistic regression on ``shots`` labelled features per class, over seeded draws."""
    rng = np.random.default_rng(seed)
    classes = np.unique(train_labels)
    unit_train = train / (np.linalg.norm(train, axis=1, keepdims=True) + 1e-12)
    unit_test = test / (np.linalg.norm(test, axis=1, keepdims=True) + 1e-12)
    scores = []
    for _ in range(draws):
        picked = np.concatenate([rng.choice(np.flatnonzero(train_labels == c), replace=False,
                                            size=min(shots, int((train_labels == c).sum()))) for c in classes])
        model = LogisticRegression(C=10.0, max_iter=1000).fit(unit_train[picked], train_labels[picked])
        scores.append(model.score(unit_test, test_labels))
    return float(np.mean(scores))


def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> float:
    """``E ||f(x) − f(y)||^α`` over positive pairs of L2-normalised features (lower: views agree)."""
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    return float((z1 - z2).norm(dim=1).pow(alpha).mean())


def uniformity(z: Tensor, t: float = 2.0) -> float:
    """``log E exp(−t ||f(x) − f(y)||²)`` over distinct pairs (lower: spread over the sphere)."""
    z = F.normalize(z.float(), dim=1)
    sq = torch.pdist(z, p=2).pow(2)
    return float(torch.logsumexp(-t * sq, dim=0) - math.log(len(sq)))


def eval_views(images: np.ndarray, seed: int = 0, scale: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """A fixed augmentation (random resized crop + horizontal flip) for alignment, the same for every method.

    Alignment compares methods, so its positive pairs must not depend on any method's own training
    augmentations. Crops are per image, batched through ``affine_grid``/``grid_sample``.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    n = len(x)
    area = torch.empty(n).uniform_(*scale, generator=gen)
    log_ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
    sx = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    sy = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    tx = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sx)
    ty = (torch.rand(n, generator=gen) * 2 - 1) * (1 - sy)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx * flip, tx, sy, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _subset(data: ImageDataset, limit: int | None, seed: int) -> ImageDataset:
    if limit is None or len(data) <= limit:
        return data
    return data.subset(np.sort(np.random.default_rng(seed).choice(len(data), size=limit, replace=False)))


def _metric(value: float, data: ImageDataset, **extra: Any) -> dict[str, Any]:
    return {"value": round(float(value), 5), "dataset": data.name, "split": data.split, **extra}


def evaluate_features(featurize: Featurize, train: ImageDataset, test: ImageDataset,
                      config: EvalConfig | None = None, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every metric for one featurizer, as registry metrics ``{"knn_top1": {"value", "dataset", "split"}, ...}``.

    Label-free metrics (alignment, uniformity, effective rank) need only ``test``; the label-based ones
    are skipped, with a log line, when either split has no labels.
    """
    cfg = config or EvalConfig()
    train, test = _subset(train, cfg.max_train, seed), _subset(test, cfg.max_test, seed + 1)
    test_feats = featurize(test.images)
    metrics = {"effective_rank": _metric(effective_rank(torch.from_numpy(test_feats)), test, task="diagnostic")}
    if cfg.alignment:
        first, second = (torch.from_numpy(featurize(eval_views(test.images, seed + s))) for s in (11, 12))
        metrics["alignment"] = _metric(alignment(first, second), test, task="diagnostic")
        metrics["uniformity"] = _metric(uniformity(torch.from_numpy(test_feats[:4096])), test, task="diagnostic")
    if train.labels is None or test.labels is None:
        log.info("%s or %s has no labels: skipping k-NN, linear probe and few-shot", train.name, test.name)
        return metrics
    train_feats = featurize(train.images)
    knn = knn_accuracy(train_feats, train.labels, test_feats, test.labels, cfg.knn_k, cfg.knn_temperature)
    metrics["knn_top1"] = _metric(knn, test, k=cfg.knn_k, temperature=cfg.knn_temperature, train_split=train.split)
    if cfg.linear_probe:
        probe = linear_probe_accuracy(train_feats, train.labels, test_feats, test.labels)
        metrics["linear_top1"] = _metric(probe, test, train_split=train.split)
    for shots in cfg.few_shot:
        acc = few_shot_accuracy(train_feats, train.labels, test_feats, test.labels, shots, cfg.few_shot_draws, seed)
        metrics[f"fewshot{shots}_top1"] = _metric(acc, test, shots=shots, draws=cfg.few_shot_draws)
    return metrics


def evaluate_encoder(encoder: ImageEncoder, train: ImageDataset, test: ImageDataset,
                     config: EvalConfig | None = None, seed: int = 0) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_features` with the encoder's embeddings (bf16 autocast if ``config.bf16``)."""
    cfg = config or EvalConfig()
    return evaluate_features(lambda images: embed_images(encoder, images, cfg.batch_size, cfg.bf16),
                             train, test, cfg, seed)
