"""The text tower, its tokenizer, and the CLIP pair as registry entries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from zoo.tokenizer import EOT_ID, encode_texts, train_wordpiece

CAPTIONS = ["a small red circle on the left", "a large blue square at the top", "a green star in the centre",
            "a yellow triangle on the right", "an emoji of a cook", "a purple heart"] * 3


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece(CAPTIONS, vocab_size=200)


@pytest.fixture
def clip(tokenizer) -> zoo.ClipModel:
    torch.manual_seed(0)
    return zoo.build_clip("vit_nano", tokenizer, embed_dim=32, img_size=28, in_chans=3,
                          text_args={"width": 64, "layers": 2, "heads": 2}).eval()


def test_long_texts_are_truncated_keeping_eot(tokenizer):
    ids, mask = encode_texts(tokenizer, ["word " * 100, ""], context_length=8)
    assert ids.shape == (2, 8) and mask[0].sum() == 8 and ids[0, -1] == EOT_ID
    assert mask[1].sum() == 2 and ids[1, 1] == EOT_ID  # an empty text is [SOS] [EOT]


def test_text_embedding_does_not_depend_on_batch_padding(clip):
    alone = clip.embed_texts(["a purple heart"])
    padded = clip.embed_texts(["a purple heart", "a small red circle on the left at the very top of the image"])
    np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(padded, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_mask_hides_padding(tokenizer, causal):
    tower = zoo.build_clip("vit_nano", tokenizer, embed_dim=16, img_size=28,
                           text_args={"width": 32, "layers": 1, "heads": 2, "causal": causal}).text.tower.eval()
    ids, mask = encode_texts(tokenizer, ["a green star"], context_length=32)
    garbage = torch.from_numpy(ids).clone()
    garbage[0, int(mask.sum()):] = 7  # change only padded positions
    with torch.no_grad():
        a = tower(torch.from_numpy(ids), torch.from_numpy(mask))
        b = tower(garbage, torch.from_numpy(mask))
    torch.testing.assert_close(a, b)


def test_clip_round_trip(clip):
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28, 3), dtype=np.uint8)
    entry = zoo.save(clip, "tinyclip")
    assert {"model.safetensors", "text.safetensors", "tokenizer.json"} <= set(entry.manifest()["files"])
    loaded = zoo.load("tinyclip")
    assert isinstance(loaded, zoo.ClipModel)
    np.testing.assert_array_equal(loaded.embed_uint8(images), clip.embed_uint8(images))
    np.testing.assert_array_equal(loaded.embed_texts(CAPTIONS[:4]), clip.embed_texts(CAPTIONS[:4]))
    assert float(loaded.scale()) == pytest.approx(float(clip.scale()))
    assert "zero-shot-image-classification" in (entry.path / "README.md").read_text()


def test_logit_scale_is_clamped_at_100(clip):
    with torch.no_grad():
        clip.logit_scale.fill_(10.0)
    assert float(clip.scale()) == pytest.approx(100.0)
