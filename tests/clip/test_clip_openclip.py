"""open_clip ViT-B-32 (random weights, offline) → zoo ClipModel: same embeddings, same tokens, same entry API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.errors import UnsafeWeightsError

open_clip = pytest.importorskip("open_clip")
from zoo.hub.openclip import clip_bpe_tokenizer, convert_open_clip, from_open_clip  # noqa: E402
from zoo.tokenizer import encode_texts  # noqa: E402

TEXTS = ["a photo of a cat.", "Hello, World!! 123 isn't it?", "naïve café — ünïcödé 😀", "",
         "word " * 100, "A  RED\tcircle\non the LEFT", "it's we'll they're"]


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, zoo.ClipModel]:
    torch.manual_seed(0)
    reference = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    converted = convert_open_clip(reference, "ViT-B-32", open_clip.get_model_config("ViT-B-32"))
    return reference, converted


def test_tokenizer_matches_open_clip() -> None:
    expected = open_clip.get_tokenizer("ViT-B-32")(TEXTS).numpy()
    ids, mask = encode_texts(clip_bpe_tokenizer(), TEXTS, 77)
    np.testing.assert_array_equal(ids, expected)
    assert ids[4, -1] == 49407 and mask[4].all()  # truncated to the context, still ending in <end_of_text>


@pytest.mark.slow
def test_embeddings_match_open_clip(pair: tuple[torch.nn.Module, zoo.ClipModel]) -> None:
    reference, ours = pair
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    tokens = open_clip.get_tokenizer("ViT-B-32")(TEXTS)
    with torch.inference_mode():
        image_diff = (reference.encode_image(pixels, normalize=True) - ours.visual(pixels)).abs().max()
        ids, mask = ours.text.tokenize(TEXTS)
        text_diff = (reference.encode_text(tokens, normalize=True) - ours.text(ids, mask)).abs().max()
    assert float(image_diff) < 1e-5, image_diff
    assert float(text_diff) < 1e-5, text_diff
    assert float(ours.scale().detach()) == pytest.approx(float(reference.logit_scale.detach().exp()))
    assert ours.config.text.init == "open_clip ViT-B-32" and ours.config.pooling == "cls"


@pytest.fixture(scope="module")
def tiny_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny ViT CLIP with QuickGELU, registered with open_clip from a JSON config (its documented way)."""
    folder = tmp_path_factory.mktemp("open_clip_cfg")
    cfg = {"embed_dim": 32, "quick_gelu": True,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    (folder / "sslzoo-tiny-clip.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(folder)
    return "sslzoo-tiny-clip"


def test_quick_gelu_parity_and_entry_round_trip(tiny_name: str) -> None:
    torch.manual_seed(0)
    reference = open_clip.create_model(tiny_name, pretrained=None).eval()
    ours = convert_open_clip(reference, tiny_name, open_clip.get_model_config(tiny_name))
    assert ours.config.text.arch_args["activation"] == "quick_gelu" and ours.config.arch_args["act_layer"] == "quick_gelu"
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    tokens = open_clip.get_tokenizer(tiny_name)(TEXTS)
    with torch.inference_mode():
        assert float((reference.encode_image(pixels, normalize=True) - ours.visual(pixels)).abs().max()) < 1e-5
        ids, mask = ours.text.tokenize(TEXTS)
        assert float((reference.encode_text(tokens, normalize=True) - ours.text(ids, mask)).abs().max()) < 1e-5
    entry = zoo.save(ours, "tiny-open-clip")
    loaded = zoo.load("tiny-open-clip")
    texts = ["a diagram", "a dog", ""]
    np.testing.assert_allclose(loaded.embed_texts(texts), ours.embed_texts(texts), atol=1e-6)
    with torch.inference_mode():
        np.testing.assert_allclose(loaded.visual(pixels).numpy(), ours.visual(pixels).numpy(), atol=1e-6)
    assert (entry.path / "tokenizer.json").is_file() and loaded.config.text.license == "unknown"


def test_local_safetensors_checkpoint(tiny_name: str, tmp_path: Path) -> None:
    """A checkpoint file in open_clip's layout (as timm's Hub CLIP repos ship it) loads strictly."""
    torch.manual_seed(3)
    reference = open_clip.create_model(tiny_name, pretrained=None).eval()
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(tmp_path / "open_clip_model.safetensors"))
    torch.manual_seed(4)  # a different random init, which the file must overwrite
    ours = from_open_clip(tiny_name, tmp_path / "open_clip_model.safetensors", license="mit")
    tokens = open_clip.get_tokenizer(tiny_name)(TEXTS[:3])
    with torch.inference_mode():
        ids, mask = ours.text.tokenize(TEXTS[:3])
        assert float((reference.encode_text(tokens, normalize=True) - ours.text(ids, mask)).abs().max()) < 1e-5
    assert ours.config.license == "mit" and "open_clip_model.safetensors" in ours.config.source


def test_pickles_refused(tmp_path) -> None:
    with pytest.raises(UnsafeWeightsError, match="pickle"):
        from_open_clip("ViT-B-32", tmp_path / "open_clip_pytorch_model.bin")
