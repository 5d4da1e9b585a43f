"""The locked-tower feature cache: computed once, reused, keyed by content."""

from __future__ import annotations

import torch

from training.clip.features import cached


def test_feature_cache_reuses_and_keys_by_content() -> None:
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return torch.arange(6.0).reshape(2, 3)

    first, again, other = cached(["a", "b"], compute), cached(["a", "b"], compute), cached(["a", "c"], compute)
    assert len(calls) == 2 and torch.equal(first, again) and torch.equal(first, other)
