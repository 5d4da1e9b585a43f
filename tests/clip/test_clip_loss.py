"""The CLIP loss against a plain per-row computation, the temperature clamp, and argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.parts.losses import LOSSES
from training.parts.losses.clip import ClipLoss
from zoo.clip import LOGIT_SCALE_MAX, build_clip
from zoo.tokenizer import train_wordpiece


def reference_loss(image: np.ndarray, text: np.ndarray, scale: float, keys: np.ndarray | None = None) -> float:
    """Symmetric cross-entropy written out row by row in float64 (CLIP paper, Fig. 3)."""
    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    n = len(image)
    keys = np.arange(n) if keys is None else keys
    total_i, total_t = 0.0, 0.0
    for i in range(n):
        positives = [j for j in range(n) if keys[j] == keys[i]]
        row = [scale * float(image[i] @ text[j]) for j in range(n)]
        col = [scale * float(text[i] @ image[j]) for j in range(n)]
        log_z_row = math.log(sum(math.exp(v) for v in row))
        log_z_col = math.log(sum(math.exp(v) for v in col))
        total_i += -sum(row[j] - log_z_row for j in positives) / len(positives)
        total_t += -sum(col[j] - log_z_col for j in positives) / len(positives)
    return 0.5 * (total_i + total_t) / n


@pytest.mark.parametrize("batch,dim,scale", [(2, 3, 1.0), (5, 8, 14.3), (16, 32, 100.0)])
def test_matches_reference(batch: int, dim: int, scale: float) -> None:
    rng = np.random.default_rng(batch)
    image, text = rng.normal(size=(batch, dim)), rng.normal(size=(batch, dim))
    got = ClipLoss()(F.normalize(torch.tensor(image), dim=1), F.normalize(torch.tensor(text), dim=1),
                     torch.tensor(scale))
    assert float(got) == pytest.approx(reference_loss(image, text, scale), rel=1e-5, abs=1e-6)


def test_shared_keys_are_positives() -> None:
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    keys = np.array([0, 1, 0, 2, 1, 3])
    got = ClipLoss()(F.normalize(torch.tensor(image), dim=1), F.normalize(torch.tensor(text), dim=1),
                     torch.tensor(5.0), torch.tensor(keys))
    assert float(got) == pytest.approx(reference_loss(image, text, 5.0, keys), rel=1e-5)
    plain = ClipLoss()(F.normalize(torch.tensor(image), dim=1), F.normalize(torch.tensor(text), dim=1),
                       torch.tensor(5.0), torch.arange(6))
    assert float(plain) == pytest.approx(reference_loss(image, text, 5.0), rel=1e-5)


def test_perfect_pairs_have_low_loss() -> None:
    z = F.normalize(torch.eye(8), dim=1)
    assert float(ClipLoss()(z, z, torch.tensor(100.0))) < 1e-6
    assert float(ClipLoss()(z, z.roll(1, 0), torch.tensor(100.0))) > 10


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="label_smoothing"):
        ClipLoss(label_smoothing=1.0)
    with pytest.raises(ValueError, match="shape"):
        ClipLoss()(torch.zeros(4, 3), torch.zeros(4, 2), 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        ClipLoss()(torch.ones(1, 3), torch.ones(1, 3), 1.0)
    assert isinstance(LOSSES.get("clip")(), ClipLoss)


def test_logit_scale_is_clamped_at_ln_100() -> None:
    tokenizer = train_wordpiece(["a red circle", "a blue square"], vocab_size=64)
    model = build_clip("resnet_narrow", tokenizer, embed_dim=8, img_size=16, text_args={"width": 16, "layers": 1,
                                                                                        "heads": 2})
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert float(model.scale().detach()) == pytest.approx(100.0)
    model.scale().backward()
    assert float(model.logit_scale.grad) == 0.0  # beyond the clamp the temperature stops moving
    with torch.no_grad():
        model.logit_scale.fill_(math.log(20.0))
    model.logit_scale.grad = None
    model.scale().backward()
    assert float(model.scale().detach()) == pytest.approx(20.0)
    assert float(model.logit_scale.grad) == pytest.approx(20.0)
    assert pytest.approx(100.0) == math.exp(LOGIT_SCALE_MAX)
