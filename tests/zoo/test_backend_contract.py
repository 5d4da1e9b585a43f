"""The torch backend keeps the backend contract of zoo.backend and names options it does not take."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import zoo
from zoo.backend import LOGIT_SCALE_MAX, ClipBackend, ImageBackend, clamped_scale
from zoo.errors import BackendOptionError
from zoo.tokenizer import train_wordpiece

CAPTIONS = ["a small red circle on the left", "a large blue square at the top", "a purple heart"] * 3


@pytest.fixture(scope="module")
def tiny_clip() -> zoo.ClipModel:
    torch.manual_seed(0)
    return zoo.build_clip("vit_nano", train_wordpiece(CAPTIONS, vocab_size=120), embed_dim=16, img_size=28,
                          text_args={"width": 32, "layers": 1, "heads": 2}).eval()


def test_torch_classes_meet_the_contract_they_claim(tiny_clip):
    encoder = zoo.build_encoder("vit_nano", img_size=28, in_chans=1)
    assert isinstance(encoder, ImageBackend) and not isinstance(encoder, ClipBackend)
    assert isinstance(tiny_clip, ClipBackend)
    pixels = np.zeros((2, 3, 28, 28), np.float32)
    np.testing.assert_array_equal(tiny_clip.embed_array(pixels), tiny_clip.visual.embed_array(pixels))


def test_torch_backend_refuses_int8_and_says_it_needs_onnx(tiny_clip):
    zoo.save(tiny_clip, "tinyclip")
    with pytest.raises(BackendOptionError, match=r"torch backend takes no options, got precision='int8'.*"
                                                 r"int8 needs the onnx backend"):
        zoo.load("tinyclip", precision="int8")
    with pytest.raises(BackendOptionError, match=r"torch backend takes no options, got intra_op_threads=2$"):
        zoo.load("tinyclip", backend="torch", intra_op_threads=2)
    assert isinstance(zoo.load("tinyclip"), ClipBackend)  # no options: loads


def test_one_clamp_for_every_backend(tiny_clip):
    assert clamped_scale(math.log(10.0)) == pytest.approx(10.0)
    assert clamped_scale(10.0) == pytest.approx(100.0) and clamped_scale(LOGIT_SCALE_MAX + 1e-3) <= 100.0 + 1e-9
    for stored in (math.log(10.0), 10.0):
        with torch.no_grad():
            tiny_clip.logit_scale.fill_(stored)
        assert tiny_clip.similarity_scale() == pytest.approx(clamped_scale(stored), rel=1e-6)
