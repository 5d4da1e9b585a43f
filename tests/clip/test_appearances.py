"""Appearance views of the default CLIP's fit: grey and inverted renderings, given only to colour-free sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import rgb_to_grayscale

from training.clip.appearances import check_appearances, grey, grey_inverted
from training.clip.default import fit_features
from training.clip.locked_fit import image_features
from training.methods.clip import Clip
from zoo.data import load_dataset
from zoo.errors import UnknownNameError

TINY_TEXT = {"width": 32, "layers": 1, "heads": 2}


def test_grey_is_torchvision_luma_in_every_channel() -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(4, 9, 7, 3), dtype=np.uint8)
    reference = rgb_to_grayscale(torch.from_numpy(images).permute(0, 3, 1, 2).float()).round().byte()
    got = grey(images)
    assert got.shape == images.shape and got.dtype == np.uint8
    assert (got == got[..., :1]).all()
    assert np.abs(got[..., 0].astype(int) - reference[:, 0].numpy().astype(int)).max() <= 1


def test_grey_inverted_turns_a_drawing_on_white_into_a_silhouette_on_black() -> None:
    drawing = np.full((1, 8, 8, 3), 255, dtype=np.uint8)
    drawing[0, 2:6, 2:6] = (200, 30, 30)
    got = grey_inverted(drawing)
    assert (got[0, 0, 0] == 0).all()
    assert (got[0, 3, 3] == 255 - round(0.299 * 200 + 0.587 * 30 + 0.114 * 30)).all()


@pytest.mark.parametrize(("names", "error"), [(("grey",), ValueError), (("plain", "plain"), ValueError),
                                              ((), ValueError), (("plain", "sepia"), UnknownNameError)])
def test_views_start_plain_name_each_once_and_are_registered(names: tuple[str, ...], error: type) -> None:
    with pytest.raises(error):
        check_appearances(names)


def test_fit_features_render_the_colour_free_sets_and_keep_shapes_plain() -> None:
    shapes = load_dataset("shapes", "train", n=6, image_size=16)
    emoji = load_dataset("emoji", "train", image_size=16).subset(np.arange(5))
    torch.manual_seed(0)
    model = Clip.from_dataset(shapes, image="resnet_narrow", embed_dim=4, img_size=16, context_length=12,
                              text_args=TINY_TEXT).model
    feats = fit_features(model, [shapes, emoji], ("plain", "grey-inverted"))
    assert feats.shape[:2] == (2, 11)
    assert torch.equal(feats[1, :6], feats[0, :6])  # shapes captions name colours: no rendering
    assert torch.allclose(feats[1, 6:], image_features(model, grey_inverted(emoji.images))[0], atol=1e-5)
    assert not torch.allclose(feats[1, 6:], feats[0, 6:], atol=1e-3)
