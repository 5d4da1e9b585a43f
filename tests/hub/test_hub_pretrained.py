"""Real architectures from timm and open_clip Hub repos: the same outputs as timm's and open_clip's own forward.

The weights are random (nothing can be downloaded here) but the architectures, configs and file layouts
are the real ones: timm's ``save_for_hf`` output for ``vit_small_patch16_224.dino`` and open_clip's
``open_clip_config.json`` + ``open_clip_model.safetensors`` for ViT-B-32. Each model is built once per
module; the repos are written straight into the test hub's git store (``seed_repo``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from hubserver import seed_repo
from PIL import Image
from safetensors.torch import save_file

import zoo
from zoo import hub

DINO_REPO = "timm/vit_small_patch16_224.dino"
CLIP_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
TEXTS = ["a photo of a cat", "a diagram of a transformer", "two dogs playing in the snow"]


def _pil_images() -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(240, 320), (256, 256)]]


@pytest.fixture(scope="module")
def dino(hub_server, tmp_path_factory):
    """A timm-format DINO ViT-S/16 repo (random weights) and the timm model it was saved from."""
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_224.dino", pretrained=False).eval()
    folder = tmp_path_factory.mktemp("dino")
    timm.models.save_for_hf(model, str(folder), safe_serialization=True)  # config.json + model.safetensors
    card = b"---\nlicense: apache-2.0\nlibrary_name: timm\ntags:\n- image-feature-extraction\n- timm\n---\n# DINO\n"
    commit = seed_repo(hub_server.root, DINO_REPO, {"config.json": folder / "config.json", "README.md": card,
                                                    "model.safetensors": folder / "model.safetensors"})
    return model, commit


@pytest.mark.slow
def test_timm_dino_repo_through_olah_matches_timm(dino, olah_server, hf_cache):
    model, commit = dino  # timm's own loader on the downloaded snapshot is the reference below
    entry = hub.pull(f"{DINO_REPO}@{commit}", endpoint=olah_server.url)
    config = entry.read_config()
    assert (config.arch, config.embed_dim, config.pooling, config.method) == ("vit_small_patch16_224", 384, "cls",
                                                                                "dino")
    assert config.license == "apache-2.0" and config.hub.catalogue == "dino-vits16"
    pretrained = model.pretrained_cfg
    assert config.preprocess.crop_pct == pretrained["crop_pct"] and config.preprocess.mean == pretrained["mean"]
    assert config.preprocess.interpolation == pretrained["interpolation"]

    ours = zoo.load(entry.ref)
    snapshot = next(hf_cache.rglob(f"snapshots/{commit}"))
    reference = timm.create_model(f"local-dir:{snapshot}", pretrained=True).eval()  # timm's own loader
    pixels = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        expected = F.normalize(reference(pixels), dim=-1)
        torch.testing.assert_close(ours(pixels), expected, rtol=0, atol=1e-6)

        # The embedding contract's preprocessing is timm's eval transform for this checkpoint.
        data_config = timm.data.resolve_data_config({}, model=reference)
        transform = timm.data.create_transform(**data_config)
        images = _pil_images()
        timm_vectors = F.normalize(reference(torch.stack([transform(im) for im in images])), dim=-1).numpy()
    np.testing.assert_allclose(ours.embed_images(images), timm_vectors, atol=1e-5)


@pytest.fixture(scope="module")
def open_clip_repo(hub_server, tmp_path_factory):
    """An open_clip ViT-B-32 repo (random weights, created offline), plus a pickle twin that must stay put."""
    open_clip = pytest.importorskip("open_clip")
    from open_clip.push_to_hf_hub import save_config_for_hf

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    folder = tmp_path_factory.mktemp("open_clip")
    save_config_for_hf(model, folder / "open_clip_config.json", model_config=open_clip.get_model_config("ViT-B-32"))
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    card = b"---\nlicense: mit\nlibrary_name: open_clip\ndatasets:\n- laion-2b\n---\n# CLIP ViT-B/32\n"
    commit = seed_repo(hub_server.root, CLIP_REPO, {
        "open_clip_config.json": folder / "open_clip_config.json", "README.md": card,
        "open_clip_model.safetensors": folder / "open_clip_model.safetensors",
        "open_clip_pytorch_model.bin": b"\x80\x04K\x01.",  # the pickle twin real repos carry
    })
    return model, open_clip.get_tokenizer("ViT-B-32"), commit


@pytest.mark.slow
def test_open_clip_repo_matches_open_clip(open_clip_repo, hub_server, hf_cache):
    model, tokenizer, commit = open_clip_repo
    entry = hub.pull(CLIP_REPO, endpoint=hub_server.url)
    config = entry.read_config()
    assert config.is_clip and config.embed_dim == 512 and config.license == "mit" and config.data == "laion-2b"
    assert config.hub.commit == commit and config.hub.format == "open_clip"
    assert config.preprocess.mean == tuple(model.visual.image_mean)
    assert not [p for p in Path(hf_cache).rglob("*.bin")], "the pickle must never be downloaded"

    ours = zoo.load(entry.ref)
    pixels = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(ours.visual(pixels), model.encode_image(pixels, normalize=True),
                                   rtol=0, atol=2e-5)
        expected_text = model.encode_text(tokenizer(TEXTS), normalize=True).numpy()
    np.testing.assert_allclose(ours.embed_texts(TEXTS), expected_text, atol=2e-5)
