"""Parts: momentum, heads, masks, views and ViT token helpers, each against a plain reference."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from training.parts import distributed, heads, masking, momentum, views, vit
from zoo.encoders import build_encoder, default_preprocess


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster than two fighting for a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- momentum


def test_update_momentum_matches_ema_formula() -> None:
    torch.manual_seed(0)
    online, ema = nn.Linear(4, 3), nn.Linear(4, 3)
    before = [p.detach().clone() for p in ema.parameters()]
    momentum.update_momentum(online, ema, 0.9)
    for old, new, theta in zip(before, ema.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * theta)


@pytest.mark.parametrize("m", [0.0, 1.0])
def test_update_momentum_extremes(m: float) -> None:
    online, ema = nn.Linear(3, 3), nn.Linear(3, 3)
    old = ema.weight.detach().clone()
    momentum.update_momentum(online, ema, m)
    torch.testing.assert_close(ema.weight, online.weight if m == 0.0 else old)


def test_update_momentum_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="momentum"):
        momentum.update_momentum(nn.Linear(2, 2), nn.Linear(2, 2), 1.5)
    with pytest.raises(ValueError, match="differ"):
        momentum.update_momentum(nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)), 0.5)


@pytest.mark.parametrize("base", [0.99, 0.996])
@pytest.mark.parametrize("step", [0, 1, 37, 50, 99, 100, 150])
def test_cosine_schedule_is_byol_tau(base: float, step: int) -> None:
    k, total = min(step, 100), 100
    expected = 1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2  # BYOL §3.1
    assert momentum.cosine_schedule(step, total, base, 1.0) == pytest.approx(expected)


def test_linear_schedule_and_errors() -> None:
    assert momentum.linear_schedule(0, 10, 0.996, 1.0) == pytest.approx(0.996)
    assert momentum.linear_schedule(5, 10, 0.996, 1.0) == pytest.approx(0.998)
    assert momentum.linear_schedule(20, 10, 0.996, 1.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        momentum.cosine_schedule(1, 0, 0.9, 1.0)
    with pytest.raises(ValueError):
        momentum.cosine_schedule(-1, 10, 0.9, 1.0)


def test_deactivate_requires_grad() -> None:
    module = momentum.deactivate_requires_grad(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
    assert not any(p.requires_grad for p in module.parameters())


# ------------------------------------------------------------------------------------------------- heads


@pytest.mark.parametrize(
    ("head", "in_dim", "out_dim"),
    [
        (heads.SimCLRProjectionHead(16, 32, 8), 16, 8),
        (heads.SimCLRProjectionHead(16, 32, 8, num_layers=3), 16, 8),
        (heads.BYOLProjectionHead(16, 32, 8), 16, 8),
        (heads.BYOLPredictionHead(8, 32, 8), 8, 8),
        (heads.MoCoV3ProjectionHead(16, 32, 8), 16, 8),
        (heads.MoCoV3PredictionHead(8, 32, 8), 8, 8),
        (heads.SimSiamProjectionHead(16, 32, 24), 16, 24),
        (heads.SimSiamPredictionHead(24, 6, 24), 24, 24),
        (heads.DINOProjectionHead(16, 32, 8, 50), 16, 50),
    ],
)
def test_head_shapes(head: nn.Module, in_dim: int, out_dim: int) -> None:
    assert head(torch.randn(5, in_dim)).shape == (5, out_dim)


def test_head_layer_specs() -> None:
    head = heads.ProjectionHead([(4, 6, nn.BatchNorm1d(6), nn.ReLU()), (6, 2, None, None)])
    linear0, bn, relu, linear1 = head.layers
    assert linear0.bias is None and isinstance(bn, nn.BatchNorm1d) and isinstance(relu, nn.ReLU)
    assert linear1.bias is not None  # a bias only where no norm follows
    with pytest.raises(ValueError):
        heads.ProjectionHead([])
    with pytest.raises(ValueError):
        heads.SimCLRProjectionHead(0)


def test_mocov3_and_simsiam_last_bn_has_no_affine() -> None:
    assert not heads.MoCoV3ProjectionHead(8, 16, 4).layers[-1].affine
    assert not heads.SimSiamProjectionHead(8, 16, 4).layers[-1].affine


@pytest.mark.parametrize("norm_last_layer", [True, False])
def test_dino_head_weight_norm(norm_last_layer: bool) -> None:
    head = heads.DINOProjectionHead(8, 16, 4, 10, norm_last_layer=norm_last_layer)
    magnitude = head.last_layer.parametrizations.weight.original0
    assert magnitude.requires_grad is (not norm_last_layer)
    with torch.no_grad():
        head.last_layer.parametrizations.weight.original1.mul_(7.0)  # rows' direction unchanged, norm ×7
    torch.testing.assert_close(head.last_layer.weight.norm(dim=1), torch.ones(10))
    assert head.last_layer.bias is None
    # The bottleneck is L2-normalised before the last layer, so outputs are cosines in [-1, 1].
    assert head(torch.randn(6, 8) * 100).abs().max() <= 1.0 + 1e-5


# ---------------------------------------------------------------------------------------------- masking


@pytest.mark.parametrize(("tokens", "ratio", "visible"), [(49, 0.75, 12), (16, 0.5, 8), (64, 0.9, 6)])
def test_random_token_mask(tokens: int, ratio: float, visible: int) -> None:
    m = masking.random_token_mask(5, tokens, ratio, generator=torch.Generator().manual_seed(0))
    assert m.keep.shape == (5, visible) and m.restore.shape == (5, tokens) and m.mask.shape == (5, tokens)
    assert (m.mask.sum(dim=1) == tokens - visible).all()
    for row in range(5):
        assert set(m.keep[row].tolist()) == set((m.mask[row] == 0).nonzero().squeeze(1).tolist())
        shuffle = torch.argsort(m.restore[row])  # restore is the inverse of the shuffle
        assert torch.equal(shuffle[:visible], m.keep[row])
        assert torch.equal(shuffle[m.restore[row]], torch.arange(tokens))


def test_random_token_mask_is_seeded_and_validates() -> None:
    a = masking.random_token_mask(3, 49, generator=torch.Generator().manual_seed(1))
    b = masking.random_token_mask(3, 49, generator=torch.Generator().manual_seed(1))
    c = masking.random_token_mask(3, 49, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.keep, b.keep) and not torch.equal(a.keep, c.keep)
    with pytest.raises(ValueError):
        masking.random_token_mask(2, 49, 1.0)
    with pytest.raises(ValueError):
        masking.random_token_mask(2, 1, 0.5)


def _is_rectangle(index: torch.Tensor, cols: int) -> bool:
    rows_, cols_ = index // cols, index % cols
    height = int(rows_.max() - rows_.min() + 1)
    width = int(cols_.max() - cols_.min() + 1)
    return height * width == len(index)


@pytest.mark.parametrize("grid", [(7, 7), (8, 8), (14, 14)])
def test_multiblock_masks(grid: tuple[int, int]) -> None:
    gen = masking.MultiBlockMaskGenerator(grid, num_targets=4)
    masks = gen(6, generator=torch.Generator().manual_seed(0))
    total = grid[0] * grid[1]
    assert len(masks.targets) == 4
    sizes = {t.shape[1] for t in masks.targets}
    assert len(sizes) == 1  # one block size per batch
    assert sizes.pop() == _block_area(masks.targets[0][0], grid[1])
    assert masks.context.shape[0] == 6 and masks.context.shape[1] >= 1
    for b in range(6):
        context = set(masks.context[b].tolist())
        for target in masks.targets:
            assert _is_rectangle(target[b], grid[1])
            assert not context & set(target[b].tolist())  # the context never sees a target patch
        assert all(0 <= i < total for i in context)


def _block_area(index: torch.Tensor, cols: int) -> int:
    rows_, cols_ = index // cols, index % cols
    return int((rows_.max() - rows_.min() + 1) * (cols_.max() - cols_.min() + 1))


def _block_sides(index: torch.Tensor, cols: int) -> tuple[int, int]:
    rows_, cols_ = index // cols, index % cols
    return int(rows_.max() - rows_.min() + 1), int(cols_.max() - cols_.min() + 1)


@pytest.mark.parametrize("grid", [(7, 7), (14, 14), (64, 64)])
def test_multiblock_targets_cover_15_to_20_percent(grid: tuple[int, int]) -> None:
    """Each side is the rounding of √(area·ratio) or √(area/ratio) for an area of 15–20 % of the grid and
    a ratio of 0.75–1.5, so the rounded sides must admit such an area and ratio; on a large grid, where
    rounding hardly matters, the area itself lies in 15–20 %."""
    gen = masking.MultiBlockMaskGenerator(grid, num_targets=1)
    total = grid[0] * grid[1]
    for seed in range(40):
        h, w = _block_sides(gen(1, generator=torch.Generator().manual_seed(seed)).targets[0][0], grid[1])
        assert (h - 0.5) * (w - 0.5) <= 0.2 * total and (h + 0.5) * (w + 0.5) >= 0.15 * total, (h, w)
        assert (h - 0.5) / (w + 0.5) <= 1.5 and (h + 0.5) / (w - 0.5) >= 0.75, (h, w)
        if total >= 1000:
            assert 0.15 - 0.02 <= h * w / total <= 0.2 + 0.02, (h, w)


def test_multiblock_validates() -> None:
    with pytest.raises(ValueError):
        masking.MultiBlockMaskGenerator((7, 7), target_scale=(0.3, 0.1))
    with pytest.raises(ValueError):
        masking.MultiBlockMaskGenerator((7, 7), num_targets=0)


# ------------------------------------------------------------------------------------------------ views

PRE1 = default_preprocess(28, 1)
IDENTITY = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "hflip_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0}


def _uint8(b: int = 8, c: int = 1, h: int = 28, w: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _standardise(x: torch.Tensor, pre: object = PRE1) -> torch.Tensor:
    mean = torch.tensor(pre.mean).view(1, -1, 1, 1)  # type: ignore[attr-defined]
    std = torch.tensor(pre.std).view(1, -1, 1, 1)  # type: ignore[attr-defined]
    return (x.float() / 255 - mean) / std


@pytest.mark.parametrize("factory", [views.simclr_views, views.byol_views, views.simsiam_views, views.mae_views,
                                     views.ijepa_views])
def test_view_shape_dtype_range(factory: object) -> None:
    configs = factory(28)  # type: ignore[operator]
    out = views.BatchViews(configs, PRE1)(_uint8(16), torch.Generator().manual_seed(0))
    assert len(out) == len(configs)
    low, high = (0 - 0.5) / 0.5, (1 - 0.5) / 0.5
    for view in out:
        assert view.shape == (16, 1, 28, 28) and view.dtype == torch.float32
        assert view.min() >= low - 1e-5 and view.max() <= high + 1e-5


def test_views_are_seeded() -> None:
    bv = views.BatchViews(views.byol_views(28), PRE1)
    x = _uint8()
    a = bv(x, torch.Generator().manual_seed(3))
    b = bv(x, torch.Generator().manual_seed(3))
    c = bv(x, torch.Generator().manual_seed(4))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], a[1])  # two views differ


def test_identity_view_is_exact_standardisation() -> None:
    config = views.ViewConfig(size=(28, 28), **IDENTITY)
    x = _uint8()
    (out,) = views.BatchViews([config], PRE1)(x)
    torch.testing.assert_close(out, _standardise(x), atol=1e-5, rtol=0)


def test_resize_view_matches_area_average() -> None:
    # A whole-image crop from 28 to 14 px averages 2×2 blocks (roi_align's adaptive sampling).
    config = views.ViewConfig(size=(14, 14), **IDENTITY)
    x = _uint8()
    (out,) = views.BatchViews([config], default_preprocess(14, 1))(x)
    expected = F.avg_pool2d(x.float(), 2)
    torch.testing.assert_close(out, (expected / 255 - 0.5) / 0.5, atol=1e-5, rtol=0)


def test_flip_and_solarize() -> None:
    x = _uint8()
    flip = views.ViewConfig(size=28, **{**IDENTITY, "hflip_p": 1.0})
    solarize = views.ViewConfig(size=28, **IDENTITY, solarize_p=1.0)
    out_flip, out_sol = views.BatchViews([flip, solarize], PRE1)(x)
    torch.testing.assert_close(out_flip, _standardise(x.flip(-1)), atol=1e-5, rtol=0)
    solarized = torch.where(x >= 128, 255 - x, x)
    torch.testing.assert_close(out_sol, _standardise(solarized), atol=1e-5, rtol=0)


def test_contrast_and_brightness_match_torchvision_for_grey() -> None:
    x = _uint8(4).float()
    factors = torch.tensor([0.6, 0.9, 1.2, 1.4])
    ones = torch.ones(4)
    params = views._Params([], [], [factors], [ones], [ones], [torch.zeros(4)], [], [], [])
    out = views.BatchViews._jitter(x.clone(), params)
    expected = torch.stack([TF.adjust_brightness(x[i] / 255, float(factors[i])) for i in range(4)]) * 255
    torch.testing.assert_close(out, expected, atol=1e-3, rtol=0)
    params = views._Params([], [], [ones], [factors], [ones], [torch.zeros(4)], [], [], [])
    out = views.BatchViews._jitter(x.clone(), params)
    expected = torch.stack([TF.adjust_contrast(x[i] / 255, float(factors[i])) for i in range(4)]) * 255
    torch.testing.assert_close(out, expected, atol=1e-3, rtol=0)


def _params(n: int, saturation: torch.Tensor | None = None, hue: torch.Tensor | None = None,
            grey: torch.Tensor | None = None) -> views._Params:
    ones = torch.ones(n)
    return views._Params([], [], [ones], [ones], [ones if saturation is None else saturation],
                         [torch.zeros(n) if hue is None else hue],
                         [torch.zeros(n, dtype=torch.bool) if grey is None else grey], [], [])


def _soft_colours(n: int = 4) -> torch.Tensor:
    """Colours near mid-grey, so that no channel clips when chroma is rotated."""
    return 128.0 + 40.0 * (torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0)) - 0.5)


def test_saturation_matches_torchvision() -> None:
    x = _soft_colours()
    factors = torch.tensor([0.0, 0.5, 1.0, 1.6])
    out = views.BatchViews._jitter(x.clone(), _params(4, saturation=factors))
    expected = torch.stack([TF.adjust_saturation(x[i] / 255, float(factors[i])) for i in range(4)]) * 255
    torch.testing.assert_close(out, expected, atol=0.05, rtol=0)  # torchvision's red weight is 0.2989, not 0.299


def test_hue_rotates_chroma_and_keeps_luma() -> None:
    x = _soft_colours()
    hue = torch.tensor([0.0, 0.1, 0.25, -0.3])
    out = views.BatchViews._jitter(x.clone(), _params(4, hue=hue))
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    yiq_in, yiq_out = (torch.einsum("ij,njhw->nihw", to_yiq, t) for t in (x, out))
    torch.testing.assert_close(out[0], x[0])  # no shift drawn: untouched
    torch.testing.assert_close(yiq_out[:, 0], yiq_in[:, 0], atol=1e-3, rtol=0)  # brightness kept
    angle_in = torch.atan2(yiq_in[:, 2], yiq_in[:, 1])
    angle_out = torch.atan2(yiq_out[:, 2], yiq_out[:, 1])
    turned = torch.remainder(angle_out - angle_in + math.pi, 2 * math.pi) - math.pi  # in (−π, π]
    expected = torch.remainder(2 * math.pi * hue + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(turned, expected.view(4, 1, 1).expand_as(turned), atol=1e-3, rtol=0)


def test_greyscale_has_equal_channels_at_luma() -> None:
    x = _uint8(4, 3, 8, 8).float()
    grey = torch.tensor([True, False, True, False])
    out = views.BatchViews._jitter(x.clone(), _params(4, grey=grey))
    luma = TF.rgb_to_grayscale(x[grey] / 255) * 255
    torch.testing.assert_close(out[grey], luma.expand(-1, 3, -1, -1), atol=0.05, rtol=0)  # 0.2989 vs 0.299 red
    torch.testing.assert_close(out[~grey], x[~grey])


def test_greyscale_view_through_the_pipeline() -> None:
    pre3 = default_preprocess(8, 3, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    config = views.ViewConfig(size=8, **{**IDENTITY, "grayscale_p": 1.0})
    (out,) = views.BatchViews([config], pre3)(_uint8(4, 3, 8, 8))
    pixels = out * torch.tensor(pre3.std).view(1, 3, 1, 1) + torch.tensor(pre3.mean).view(1, 3, 1, 1)
    torch.testing.assert_close(pixels[:, 0], pixels[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(pixels[:, 0], pixels[:, 2], atol=1e-5, rtol=0)


def test_blur_matches_torchvision_per_sample() -> None:
    x = _uint8(3, 3, 16, 16).float()
    sigma = torch.tensor([0.0, 0.7, 1.3])
    out = views._blur(x, sigma)
    size = 2 * math.ceil(3 * 1.3) + 1
    torch.testing.assert_close(out[0], x[0])  # σ = 0: untouched
    for i in (1, 2):
        expected = TF.gaussian_blur(x[i], kernel_size=[size, size], sigma=[float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], expected, atol=1e-3, rtol=1e-4)


def test_colour_views_and_channel_conversion() -> None:
    pre3 = default_preprocess(24, 3, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    configs = [views.ViewConfig(size=24, hue=0.5, saturation=0.5, grayscale_p=0.5, blur_p=1.0, blur_sigma=(0.5, 1.5))]
    bv = views.BatchViews(configs, pre3)
    (out,) = bv(_uint8(8, 3, 32, 32), torch.Generator().manual_seed(0))
    assert out.shape == (8, 3, 24, 24) and torch.isfinite(out).all()
    (grey_in,) = bv(_uint8(8, 1, 32, 32))  # grey images for a colour encoder: replicated channels
    assert grey_in.shape == (8, 3, 24, 24)
    with pytest.raises(ValueError, match="channels"):
        views.BatchViews(configs, pre3)(_uint8(2, 2, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        bv(torch.rand(2, 3, 8, 8))


def test_crop_boxes_follow_scale_and_ratio() -> None:
    boxes = views.crop_boxes(2000, 28, 28, (0.2, 0.6), (0.75, 4 / 3), torch.Generator().manual_seed(0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 28 + 1e-4).all() and (boxes[:, 3] <= 28 + 1e-4).all()
    area = w * h / 28**2
    assert area.min() >= 0.2 - 1e-4 and area.max() <= 0.6 + 1e-4
    assert (w / h).min() >= 0.75 - 1e-4 and (w / h).max() <= 4 / 3 + 1e-4
    assert area.std() > 0.05  # really random


def test_multicrop_runs_one_roi_align_per_size(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, tuple[int, int]]] = []
    real = views.roi_align

    def counting(x: torch.Tensor, boxes: torch.Tensor, output_size: tuple[int, int], **kwargs: object) -> torch.Tensor:
        calls.append((boxes.shape[0], tuple(output_size)))
        return real(x, boxes, output_size, **kwargs)

    monkeypatch.setattr(views, "roi_align", counting)
    configs = views.dino_views(28, 12, num_local=5)
    out = views.BatchViews(configs, PRE1)(_uint8(8))
    assert [v.shape[-1] for v in out] == [28, 28] + [12] * 5
    assert sorted(calls) == [(16, (28, 28)), (40, (12, 12))]


def test_view_config_validates() -> None:
    with pytest.raises(ValueError):
        views.ViewConfig(size=28, scale=(0.5, 0.2))
    with pytest.raises(ValueError):
        views.ViewConfig(size=28, hflip_p=1.5)
    with pytest.raises(ValueError):
        views.ViewConfig(size=28, brightness=1.0)
    with pytest.raises(ValueError, match="unknown view settings"):
        views.ViewConfig(size=28).replace(colour=1)
    assert views.ViewConfig(size=28).replace(scale=[0.5, 1.0]).scale == (0.5, 1.0)


def test_small_images_get_no_blur_large_get_papers() -> None:
    assert all(c.blur_p == 0 for c in views.byol_views(28))
    assert [c.blur_p for c in views.byol_views(224)] == [1.0, 0.1]
    assert [c.solarize_p for c in views.byol_views(28)] == [0.0, 0.2]


# ------------------------------------------------------------------------------------------ vit helpers


@pytest.fixture(scope="module")
def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    return build_encoder("vit_nano", in_chans=1, img_size=28, depth=2).backbone.eval()


def test_token_path_reproduces_forward_features(tiny_vit: nn.Module) -> None:
    x = torch.randn(3, 1, 28, 28)
    ours = vit.encode_tokens(tiny_vit, vit.patch_tokens(tiny_vit, x))
    torch.testing.assert_close(ours, tiny_vit.forward_features(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vit.features_any_size(tiny_vit, x), tiny_vit(x))


def test_token_path_takes_other_sizes(tiny_vit: nn.Module) -> None:
    out = vit.features_any_size(tiny_vit, torch.randn(2, 1, 12, 12))
    assert out.shape == (2, 128) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="multiple"):
        vit.patch_tokens(tiny_vit, torch.randn(1, 1, 13, 13))


def test_patchify_order() -> None:
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    patches = vit.patchify(x, 4)
    assert patches.shape == (2, 4, 48)
    for b in range(2):
        for i, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            block = x[b, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4]  # [C, p, p]
            torch.testing.assert_close(patches[b, i], block.permute(1, 2, 0).reshape(-1))


def test_sincos_pos_embed() -> None:
    pos = vit.sincos_pos_embed(16, (3, 4))
    assert pos.shape == (1, 12, 16)
    assert torch.unique(pos[0], dim=0).shape[0] == 12  # every position distinct
    with pytest.raises(ValueError):
        vit.sincos_pos_embed(10, (2, 2))


def test_gather_without_process_group_is_identity() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    assert distributed.gather(x) is x
    assert distributed.world_size() == 1 and distributed.rank() == 0


def test_all_reduce_mean_is_one_function_returning_a_detached_copy() -> None:
    from training import distributed as trainer_distributed

    assert trainer_distributed.all_reduce_mean is distributed.all_reduce_mean
    x = torch.ones(3, requires_grad=True)
    out = distributed.all_reduce_mean(x)
    assert torch.equal(out, x.detach()) and out is not x and not out.requires_grad
    out.add_(1)
    assert torch.equal(x.detach(), torch.ones(3))  # the input is never reduced in place
