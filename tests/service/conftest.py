"""Fixtures for the service tests: one small registry (an image model and a tiny CLIP) per session."""

from __future__ import annotations

from pathlib import Path

import pytest

CAPTIONS = ["a red circle", "a blue square", "a green star", "a yellow triangle", "a photo of a cat", "a dog"] * 3


@pytest.fixture(scope="session")
def service_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with ``default`` (ViT-nano, 28 px RGB) and ``clip`` (ViT-nano + 2-layer text tower)."""
    import torch

    import zoo
    from zoo.tokenizer import train_wordpiece

    home = tmp_path_factory.mktemp("service_home")
    registry = zoo.Registry(home, readonly_roots=())  # session fixture: the shipped models hidden here too
    torch.manual_seed(0)
    zoo.save(zoo.build_encoder("vit_nano", in_chans=3, img_size=28), "default", registry=registry)
    tokenizer = train_wordpiece(CAPTIONS, vocab_size=200)
    clip = zoo.build_clip("vit_nano", tokenizer, embed_dim=32, img_size=28,
                          text_args={"width": 64, "layers": 2, "heads": 2})
    zoo.save(clip.eval(), "clip", registry=registry)
    return home


@pytest.fixture(scope="session")
def reference_models(service_home: Path) -> dict[str, object]:
    """The same entries loaded in-process: the independent reference for what the server returns."""
    import zoo

    registry = zoo.Registry(service_home, readonly_roots=())
    return {"default": zoo.load("default", registry=registry), "clip": zoo.load("clip", registry=registry)}
