"""PNG figures for the model card: training curves and a 2-D PCA projection of test embeddings.

A person should be able to look at an entry and see whether the loss fell, whether the embeddings kept
their spread, and whether the classes separate, without reading a table.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

CURVES = (("loss", "loss"), ("lr", "learning rate"), ("emb_std", "normalised embedding std (1 = spread)"),
          ("emb_rank", "effective rank of a batch"))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def training_curves_png(rows: Sequence[dict[str, Any]], title: str = "") -> bytes:
    """Loss, learning rate and collapse diagnostics against the optimiser step, as PNG bytes."""
    fig, axes = plt.subplots(2, 2, figsize=(9, 6))
    steps = [r["step"] for r in rows]
    for ax, (key, label) in zip(axes.flat, CURVES, strict=True):
        points = [(s, r[key]) for s, r in zip(steps, rows, strict=True) if key in r]
        if points:
            ax.plot(*zip(*points, strict=True), lw=1.2)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def pca_2d(features: np.ndarray) -> np.ndarray:
    """The first two principal components of ``features`` (centred SVD)."""
    centred = features - features.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def projection_png(features: np.ndarray, labels: np.ndarray | None, class_names: Sequence[str] | None = None,
                   title: str = "", max_points: int = 3000, seed: int = 0) -> bytes:
    """A PCA scatter of embeddings coloured by label, as PNG bytes."""
    if len(features) > max_points:
        keep = np.random.default_rng(seed).choice(len(features), size=max_points, replace=False)
        features, labels = features[keep], None if labels is None else labels[keep]
    xy = pca_2d(features.astype(np.float64))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=3, alpha=0.6)
    else:
        cmap = plt.get_cmap("tab10" if labels.max() < 10 else "tab20")
        for c in np.unique(labels):
            name = class_names[c] if class_names is not None and c < len(class_names) else str(c)
            points = xy[labels == c]
            ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.6, color=cmap(int(c) % cmap.N), label=name)
        ax.legend(markerscale=4, fontsize=7, loc="best", frameon=False)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or "PCA of test embeddings", fontsize=10)
    return _png(fig)
