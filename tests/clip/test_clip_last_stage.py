"""Fine-tuning the image trunk's last stages on cached stage inputs (``training.clip.last_stage``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.clip.captions import build_caption_table
from training.clip.features import text_trunk_features
from training.clip.last_stage import finetune_tail, stage_inputs
from training.clip.locked_fit import fit_projections, image_features
from training.methods.clip import Clip
from zoo.data import ImageDataset, load_dataset
from zoo.errors import ConfigError

TINY_TEXT = {"width": 32, "layers": 1, "heads": 2}


def _pair(ds: ImageDataset, image: str = "tf_efficientnet_lite0") -> Clip:
    torch.manual_seed(0)
    return Clip.from_dataset(ds, image=image, embed_dim=16, img_size=32, context_length=12, text_args=TINY_TEXT)


def test_cached_stage_inputs_plus_tail_equal_the_whole_trunk() -> None:
    ds = load_dataset("shapes", "train", n=24, image_size=16)
    model = _pair(ds).model.eval()
    whole = image_features(model, ds.images)[0]
    inputs = stage_inputs(model, ds.images, first_trained=5, views=2)
    assert inputs.shape[:2] == (2, 24) and inputs.dtype == torch.bfloat16
    backbone = model.visual.backbone
    with torch.no_grad():
        x = inputs[0].float()
        for block in backbone.blocks[5:]:
            x = block(x)
        split = backbone.forward_head(backbone.bn2(backbone.conv_head(x)), pre_logits=True)
    # bf16 storage of the cached map costs a little precision, nothing more
    assert torch.nn.functional.cosine_similarity(split, whole).min() > 0.999


def test_finetune_trains_only_the_tail_and_lowers_the_loss() -> None:
    ds = load_dataset("shapes", "train", n=24, image_size=16)
    model = _pair(ds).model
    table = build_caption_table(ds, model.text.tokenizer, 12)
    texts = text_trunk_features(model, table.texts)
    fit_projections(model, table, image_features(model, ds.images), texts, steps=5, batch_size=24, lr=1e-2)
    backbone = model.visual.backbone
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    inputs = stage_inputs(model, ds.images, first_trained=5, views=2)
    result = finetune_tail(model, table, inputs, texts, 5, steps=25, batch_size=24, lr=3e-3)
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    after = backbone.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("blocks.5.") for k in changed) and any(k.startswith("conv_head.") for k in changed)
    assert not any(k.startswith(("conv_stem.", "bn1.", "blocks.0.", "blocks.4.")) for k in changed)
    assert not any("running_" in k or k.startswith("bn2.") for k in changed)  # batch norms stay ImageNet's
    assert not any(p.requires_grad for p in model.parameters())
    assert "stages 5.." in model.config.image_tower.trainable  # the card must not say "locked"


def test_tail_refuses_other_trunks_and_stages() -> None:
    ds = load_dataset("shapes", "train", n=4, image_size=16)
    with pytest.raises(ConfigError, match="EfficientNet"):
        stage_inputs(_pair(ds, "resnet_narrow").model, ds.images, first_trained=2)
    with pytest.raises(ConfigError, match="first_trained"):
        stage_inputs(_pair(ds).model, ds.images, first_trained=7)
