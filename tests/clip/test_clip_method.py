"""The registered ``clip`` method: training steps, locked towers, bad captions, and the saved entry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from training.clip.captions import build_caption_table
from training.clip.features import text_trunk_features
from training.clip.locked_fit import fit_projections, image_features
from training.methods import METHODS
from training.methods.clip import Clip
from zoo.clip import ClipModel
from zoo.config import TextConfig
from zoo.data import ImageDataset, load_dataset
from zoo.encoders import build_encoder
from zoo.text import TextEncoder

TINY_TEXT = {"width": 32, "layers": 1, "heads": 2}


def _dataset(captions: list[list[str]]) -> ImageDataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(len(captions), 16, 16, 3), dtype=np.uint8)
    return ImageDataset("tiny", "train", images, None, None, captions, "CC0", "test")


def _batch(ds: ImageDataset, index: list[int]) -> dict[str, torch.Tensor]:
    idx = torch.tensor(index)
    return {"images": torch.from_numpy(ds.images[idx.numpy()]).permute(0, 3, 1, 2).contiguous(), "index": idx}


def _method(ds: ImageDataset, **kwargs: object) -> Clip:
    torch.manual_seed(0)
    return Clip.from_dataset(ds, image="resnet_narrow", embed_dim=16, img_size=16,
                                           context_length=12, text_args=TINY_TEXT, **kwargs)


def test_training_steps_lower_the_loss() -> None:
    ds = load_dataset("shapes", "train", n=32, image_size=16)
    torch.manual_seed(0)
    encoder = build_encoder("resnet_narrow", img_size=16, embed_dim=16)  # as the trainer builds it from a recipe
    method = METHODS.get("clip")(encoder=encoder, dataset=ds, context_length=12, text_args=TINY_TEXT)
    assert isinstance(method, Clip) and method.model.visual.backbone is encoder.backbone
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=3e-3)
    batch, losses = _batch(ds, list(range(32))), []
    method.train()
    for step in range(10):
        out = method.training_step(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        method.on_step_end(step, 10)
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < losses[0] - 0.3, losses
    assert out["embeddings"].shape == (32, 16)


def test_caption_choice_varies_by_step_and_is_reproducible() -> None:
    ds = load_dataset("shapes", "train", n=8, image_size=16)
    table = _method(ds).captions
    index = torch.arange(8)
    picks = [table.pick(index, step) for step in range(6)]
    assert len({tuple(p.tolist()) for p in picks}) > 1  # several phrasings get used
    assert torch.equal(table.pick(index, 3), picks[3])
    assert all(bool(((p >= table.offsets[:-1]) & (p < table.offsets[1:])).all()) for p in picks)


def test_bad_captions_are_handled() -> None:
    long = "a very long caption " * 40
    ds = _dataset([["a red circle"], [""], [], [long], ["   "], ["a blue square", ""]])
    method = _method(ds)
    table = method.captions
    assert table.info["images_without_captions"] == 3
    assert table.counts.tolist() == [1, 0, 0, 1, 0, 1]
    long_row = int(table.offsets[3])
    assert int(table.mask[long_row].sum()) == 12 and int(table.ids[long_row, -1]) == 2  # truncated, ends in [EOT]
    out = method.training_step(_batch(ds, [0, 1, 2, 3, 4, 5]))  # uncaptioned images are left out
    assert float(out["captioned"]) == 3 and torch.isfinite(out["loss"])
    vectors = method.model.embed_texts(["", long])
    assert np.isfinite(vectors).all() and vectors.shape == (2, 16)
    with pytest.raises(zoo.DataError, match="no image has a usable caption"):
        _method(_dataset([[""], []]))


def test_captions_file_with_missing_images(tmp_path: Path) -> None:
    for name, colour in (("red.png", (255, 0, 0)), ("blue.png", (0, 0, 255))):
        Image.new("RGB", (20, 20), colour).save(tmp_path / name)
    rows = [{"image": "red.png", "text": ["a red square", "red"]}, {"image": "gone.png", "text": "lost"},
            {"image": "blue.png", "text": "a blue square"}, {"image": "also-gone.jpg", "text": "lost too"}]
    (tmp_path / "caps.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_dataset(f"captions:{tmp_path / 'caps.jsonl'}", "all", image_size=16)
    assert ds.info["skipped_missing"] == 2 and sorted(ds.info["skipped_missing_examples"]) == ["also-gone.jpg", "gone.png"]
    method = _method(ds)
    assert method.captions.info["images"] == 2 and method.captions.info["captions"] == 3
    assert torch.isfinite(method.training_step(_batch(ds, [0, 1]))["loss"])


def test_locked_towers_train_only_projections() -> None:
    ds = load_dataset("shapes", "train", n=16, image_size=16)
    method = _method(ds, lock_image=True, lock_text=True)
    trainable = {n for n, p in method.named_parameters() if p.requires_grad}
    assert trainable == {"model.logit_scale", "model.visual.backbone.fc.weight", "model.visual.backbone.fc.bias",
                         "model.text.tower.projection.weight"}
    before = {k: v.clone() for k, v in method.model.state_dict().items()}
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    method.train()
    for step in range(2):
        loss = method.training_step(_batch(ds, list(range(16))))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.on_step_end(step, 2)
    after = method.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"logit_scale", "visual.backbone.fc.weight", "visual.backbone.fc.bias",
                       "text.tower.projection.weight"}  # BatchNorm statistics of the locked trunk too stay put
    rows = torch.nonzero(method._text_done).squeeze(1)
    assert len(rows) >= 16  # locked text features cached per caption row, equal to a fresh computation
    with torch.no_grad():
        fresh = method.model.text.tower.pooled(method.captions.ids[rows], method.captions.mask[rows])
    torch.testing.assert_close(method._text_cache[rows], fresh, rtol=1e-5, atol=1e-5)
    model = method.encoder()
    assert model.config.text.trainable is False and model.config.image_tower.trainable is False


def _round_trip(model: ClipModel, name: str) -> None:
    zoo.save(model, name)
    loaded = zoo.load(name)
    texts = ["a red circle", "", "word " * 50]
    np.testing.assert_allclose(loaded.embed_texts(texts), model.embed_texts(texts), atol=1e-6)
    images = load_dataset("shapes", "test", n=4, image_size=16).images
    np.testing.assert_allclose(loaded.embed_uint8(images), model.embed_uint8(images), atol=1e-6)
    assert float(loaded.scale().detach()) == pytest.approx(float(model.scale().detach()))
    assert json.loads(json.dumps(loaded.config.to_dict())) == json.loads(json.dumps(model.config.to_dict()))


def test_save_load_round_trip_transformer_tower() -> None:
    ds = load_dataset("shapes", "train", n=16, image_size=16)
    method = _method(ds)
    method.training_step(_batch(ds, list(range(16))))["loss"].backward()
    _round_trip(method.encoder(), "clip-tiny")


def test_save_load_round_trip_bert_tower() -> None:
    ds = load_dataset("shapes", "train", n=16, image_size=16)
    base = _method(ds).model
    args = {"vocab_size": base.text.tokenizer.get_vocab_size(), "width": 32, "layers": 1, "heads": 2,
            "intermediate": 64, "max_positions": 16, "context_length": 12}
    config = TextConfig(arch="bert", arch_args=args, embed_dim=16, context_length=12, pooling="mean")
    text = TextEncoder(config, base.text.tokenizer)
    full = base.config.replace(text=config)
    _round_trip(ClipModel(full, base.text.tokenizer, visual=base.visual, text=text), "clip-bert-tiny")


def test_fast_path_heads_reproduce_trained_embeddings() -> None:
    ds = load_dataset("shapes", "train", n=32, image_size=16)
    method = _method(ds)
    model, table = method.model, build_caption_table(ds, method.model.text.tokenizer, 12)
    feats, texts = image_features(model, ds.images, views=2), text_trunk_features(model, table.texts)
    assert feats.shape[:2] == (2, 32)
    result = fit_projections(model, table, feats, texts, steps=30, batch_size=32, lr=1e-2)
    assert result.losses[-1] < result.losses[0]
    # The standardisation folded into the head: the saved model's own forward gives the trained embeddings.
    np.testing.assert_allclose(model.embed_uint8(ds.images), result.image_embeddings.numpy(), atol=1e-5)
