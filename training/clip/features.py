"""Locked-tower features computed once and kept on disk, keyed by everything they depend on.

The default CLIP's fit reads pooled image-trunk features of ~12,000 images; on two shared cores that
is a quarter of an hour, the fit itself a minute. The features depend only on the trunk's weights, the
images and how they were viewed, so they are cached under ``$SSLZOO_HOME/cache/clip-features/`` in a
safetensors file named by the sha256 of all three (and of the torch thread count, which changes the
last bits of float sums). A rebuild with the same inputs reads the same bytes, so it stays bit for bit.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from training.clip.locked_fit import image_features
from training.methods.clip import image_trunk_and_head
from zoo.clip import ClipModel
from zoo.config import PreprocessConfig
from zoo.registry import sslzoo_home
from zoo.text import trim_padding
from zoo.tokenizer import encode_texts

log = logging.getLogger(__name__)
VIEW0 = "view0=served-preprocessing"  # how view 0 is drawn (locked_fit.view_batches); a change must change it


def trunk_digest(backbone: nn.Module, preprocess: PreprocessConfig) -> str:
    """sha256 of a timm image trunk's weights (its classifier, our projection head, excluded) and preprocessing."""
    digest = hashlib.sha256(repr(preprocess).encode())
    for name, value in backbone.state_dict().items():
        if not name.startswith("classifier."):  # timm's classifier is the projection head
            digest.update(name.encode() + value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached(key_parts: list[str], compute: Callable[[], Tensor]) -> Tensor:
    """``compute()``, stored under the sha256 of ``key_parts`` (and the torch thread count) and reused."""
    digest = hashlib.sha256("\0".join([*key_parts, f"threads={torch.get_num_threads()}"]).encode()).hexdigest()
    path = sslzoo_home() / "cache" / "clip-features" / f"{digest[:32]}.safetensors"
    if path.is_file():
        return load_file(str(path))["features"]
    features = compute().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"features": features}, str(tmp))
    os.replace(tmp, path)
    log.info("cached %s features %s in %s", key_parts[1] if len(key_parts) > 1 else "", tuple(features.shape), path)
    return features


def cached_image_features(model: ClipModel, images: np.ndarray, *, label: str, views: int = 1,
                          seed: int = 0) -> Tensor:
    """:func:`training.clip.locked_fit.image_features` of ``images``, from the cache when it holds them."""
    trunk = trunk_digest(image_trunk_and_head(model)[0], model.config.preprocess)
    image_digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
    key = [trunk, label, image_digest, str(images.shape), f"views={views}", f"seed={seed}", VIEW0]
    return cached(key, lambda: image_features(model, images, views=views, seed=seed))


def text_trunk_features(model: ClipModel, texts: list[str], batch_size: int = 256) -> Tensor:
    """Pooled locked text-trunk features ``[N, F_t]`` of ``texts`` (before the projection), cached on disk.

    Each distinct text is encoded once (caption tables repeat the same prompts thousands of times), in
    batches of texts of like length, in an order fixed by the texts alone. The bank is keyed by the whole
    set of distinct texts, the tower and the thread count (:func:`cached`), and never shared between
    sets: a text's last bits depend on the batch it was padded with, so rows reused from another call's
    batches would make a build depend on what ran before it (a cold rebuild would differ from the first).
    """
    tower, context = model.text.tower, model.config.text.context_length if model.config.text else 32
    distinct = sorted(set(texts), key=lambda t: (len(t), t))  # like lengths carry less padding
    weights = hashlib.sha256(f"context={context}".encode())
    for name, value in tower.state_dict().items():
        if not name.startswith("projection"):
            weights.update(name.encode() + value.detach().cpu().contiguous().numpy().tobytes())
    features = cached([weights.hexdigest(), "text-trunk", *distinct],
                      lambda: _encode(model, distinct, context, batch_size))
    row = {text: i for i, text in enumerate(distinct)}
    return features[torch.tensor([row[t] for t in texts], dtype=torch.long)]


@torch.inference_mode()
def _encode(model: ClipModel, texts: list[str], context: int, batch_size: int) -> Tensor:
    tower: Any = model.text.tower  # pooled: the text towers' convention, not nn.Module's
    tower.eval()
    ids, mask = (torch.from_numpy(a) for a in encode_texts(model.text.tokenizer, texts, context))
    return torch.cat([tower.pooled(*trim_padding(ids[s : s + batch_size], mask[s : s + batch_size])).float()
                      for s in range(0, len(texts), batch_size)])
