"""Saving the same weights twice gives the same bytes, so shipped files and embedding-space ids reproduce."""

from __future__ import annotations

import torch
from safetensors.torch import load

from zoo.torch_backend import weights_bytes


def test_the_same_weights_give_the_same_bytes_whatever_the_metadata_order() -> None:
    tensors = {"b.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.ones(3, dtype=torch.float16)}
    metadata = {"format": "pt", "storage": "float16", "source": "é.pt", "zeta": "1"}
    orders = [metadata, dict(reversed(metadata.items()))]
    # safetensors orders the metadata by a per-map random hash seed: 40 saves would almost surely differ
    outputs = {weights_bytes(tensors, orders[i % 2]) for i in range(40)}
    assert len(outputs) == 1
    (raw,) = outputs
    assert b'"__metadata__":{"format":"pt","source":"\xc3\xa9.pt","storage":"float16","zeta":"1"}' in raw
    loaded = load(raw)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_weights_without_metadata_are_written_as_they_are() -> None:
    raw = weights_bytes({"w": torch.zeros(2)}, {})
    assert torch.equal(load(raw)["w"], torch.zeros(2))
