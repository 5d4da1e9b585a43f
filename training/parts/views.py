"""Batched view augmentations on uint8 tensors: every sample its own random parameters, one pass per size.

A per-image pipeline (PIL or tensor transforms in a DataLoader) spends most of a small model's step in
Python. Here the whole batch is augmented with a handful of tensor ops, on the training device:

* random resized crops for *all* views of one output size come from one ``torchvision.ops.roi_align``
  call (a box per sample and view, indexing into the same uint8 batch: nothing is copied per view);
  its adaptive sampling averages several points per output pixel when a crop shrinks, like antialiasing;
* horizontal flips, colour jitter (brightness, contrast, saturation, hue), grayscale, Gaussian blur
  (one grouped convolution with a kernel per sample) and solarisation are per-sample factors, with
  identity factors for the samples a probability leaves untouched;
* the result is standardised with the encoder's preprocessing mean and std.

Grey images (one channel) get brightness and contrast only. Colour jitter applies its four adjustments
in a fixed order rather than torchvision's random permutation, and hue is a rotation in YIQ space (a
close, cheap stand-in for an HSV hue shift). Random numbers come from ``generator`` (or torch's global
CPU generator, which a trainer seeds and checkpoints), so views are reproducible on any device.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from zoo.config import PreprocessConfig

_GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale
_SMALL = 64  # images at most this size get the small-image defaults (no blur: SimCLR App. B.9, CIFAR)


@dataclass(frozen=True)
class ViewConfig:
    """One view's augmentation distribution, in torchvision's terms.

    Attributes:
        size: Output ``(height, width)``.
        scale: Area fraction range of the crop (``RandomResizedCrop.scale``).
        ratio: Aspect-ratio range of the crop.
        hflip_p: Probability of a horizontal flip.
        jitter_p: Probability of colour jitter.
        brightness, contrast, saturation, hue: ``ColorJitter`` strengths (factors drawn from
            ``[1 − s, 1 + s]``, hue from ``[−h, h]``).
        grayscale_p: Probability of converting to grey (colour images only).
        blur_p: Probability of a Gaussian blur.
        blur_sigma: Blur σ range in output pixels.
        solarize_p: Probability of solarising (inverting pixels ≥ 128 of 255).
    """

    size: tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0

    def __post_init__(self) -> None:
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(int(s) for s in self.size)
        object.__setattr__(self, "size", size)
        for name in ("scale", "ratio", "blur_sigma"):
            value = tuple(float(v) for v in getattr(self, name))
            object.__setattr__(self, name, value)
            if len(value) != 2 or not 0.0 < value[0] <= value[1]:
                raise ValueError(f"{name} must be an increasing pair of positive numbers, got {value}")
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be positive (height, width), got {self.size}")
        if self.scale[1] > 1.0:
            raise ValueError(f"scale must lie in (0, 1], got {self.scale}")
        for name in ("hflip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")

    def replace(self, **changes: Any) -> ViewConfig:
        """A copy with some fields changed (lists from YAML become tuples)."""
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown view settings {unknown}; known: {[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _bernoulli(n: int, p: float, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator) < p


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
               generator: torch.Generator | None = None, attempts: int = 10) -> Tensor:
    """``[n, 4]`` boxes ``(x1, y1, x2, y2)`` drawn as torchvision's ``RandomResizedCrop.get_params`` does.

    Up to ``attempts`` (area, log-aspect) candidates per sample; the first that fits is used, else the
    whole image. Boxes are continuous (sub-pixel), which roi_align samples exactly.
    """
    area = height * width * _uniform(n * attempts, *scale, generator).view(n, attempts)
    log_ratio = _uniform(n * attempts, math.log(ratio[0]), math.log(ratio[1]), generator).view(n, attempts)
    aspect = torch.exp(log_ratio)
    w = torch.sqrt(area * aspect)
    h = torch.sqrt(area / aspect)
    fits = (w <= width) & (h <= height)
    first = fits.float().argmax(dim=1, keepdim=True)
    w = torch.gather(w, 1, first).squeeze(1)
    h = torch.gather(h, 1, first).squeeze(1)
    none_fit = ~fits.any(dim=1)
    w = torch.where(none_fit, torch.full_like(w, width), w)
    h = torch.where(none_fit, torch.full_like(h, height), h)
    x1 = torch.rand(n, generator=generator) * (width - w)
    y1 = torch.rand(n, generator=generator) * (height - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)


def _gaussian_kernels(sigma: Tensor, size: int) -> Tensor:
    """``[n, size]`` normalised 1-D Gaussian kernels; σ = 0 gives the identity (a delta)."""
    half = (size - 1) / 2
    x = torch.linspace(-half, half, size)
    safe = sigma.clamp_min(1e-6)[:, None]
    kernel = torch.exp(-0.5 * (x[None, :] / safe) ** 2)
    return kernel / kernel.sum(dim=1, keepdim=True)


def _blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Per-sample separable Gaussian blur with reflect padding (σ in pixels, 0 = untouched)."""
    n, channels, height, width = x.shape
    radius = max(1, math.ceil(3.0 * float(sigma.max())))
    radius = min(radius, (min(height, width) - 1) // 2)
    if radius < 1:
        return x
    size = 2 * radius + 1
    kernel = _gaussian_kernels(sigma, size).to(x.device, x.dtype).repeat_interleave(channels, dim=0)
    flat = x.reshape(1, n * channels, height, width)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(n * channels, 1, 1, size), groups=n * channels)
    flat = F.conv2d(flat, kernel.view(n * channels, 1, size, 1), groups=n * channels)
    return flat.view(n, channels, height, width)


def _grey(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(_GREY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def _hue_rotate(x: Tensor, hue: Tensor) -> Tensor:
    """Rotate chroma in YIQ space by ``2π·hue`` per sample (an HSV hue shift's cheap stand-in)."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          device=x.device, dtype=x.dtype)
    from_yiq = torch.linalg.inv(to_yiq)
    angle = 2 * math.pi * hue.to(x.device, x.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(hue), 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    matrix = from_yiq @ rot @ to_yiq  # [n, 3, 3]
    return torch.einsum("nij,njhw->nihw", matrix, x)


def _per_sample(values: Tensor, x: Tensor) -> Tensor:
    return values.to(x.device, x.dtype).view(-1, 1, 1, 1)


@dataclass
class _Params:
    """Per-sample factors for one size group (all views of one output size, view-major)."""

    boxes: list[Tensor]
    flip: list[Tensor]
    brightness: list[Tensor]
    contrast: list[Tensor]
    saturation: list[Tensor]
    hue: list[Tensor]
    grey: list[Tensor]
    sigma: list[Tensor]
    solarize: list[Tensor]

    def cat(self, name: str) -> Tensor:
        return torch.cat(getattr(self, name))


def _sample(configs: Sequence[ViewConfig], batch: int, height: int, width: int,
            generator: torch.Generator | None) -> _Params:
    params = _Params([], [], [], [], [], [], [], [], [])
    for c in configs:
        params.boxes.append(crop_boxes(batch, height, width, c.scale, c.ratio, generator))
        params.flip.append(_bernoulli(batch, c.hflip_p, generator))
        jitter = _bernoulli(batch, c.jitter_p, generator)
        for name in ("brightness", "contrast", "saturation"):
            strength = getattr(c, name)
            factor = _uniform(batch, 1.0 - strength, 1.0 + strength, generator)
            getattr(params, name).append(torch.where(jitter, factor, torch.ones(batch)))
        params.hue.append(torch.where(jitter, _uniform(batch, -c.hue, c.hue, generator), torch.zeros(batch)))
        params.grey.append(_bernoulli(batch, c.grayscale_p, generator))
        blur = _bernoulli(batch, c.blur_p, generator)
        params.sigma.append(torch.where(blur, _uniform(batch, *c.blur_sigma, generator), torch.zeros(batch)))
        params.solarize.append(_bernoulli(batch, c.solarize_p, generator))
    return params


class BatchViews:
    """Turns a uint8 batch into several augmented, standardised float views.

    Views that share an output size are cropped together in one ``roi_align`` call and augmented as one
    batch. Calling returns one ``[B, C, h, w]`` tensor per config, in config order; views of one size
    are slices of one contiguous tensor, so ``torch.cat`` of them is cheap.

    Args:
        configs: One :class:`ViewConfig` per view.
        preprocess: The encoder's preprocessing: channels, mean and std.
        channels_last: Return channels-last tensors (faster convolutions on CPU with bf16).
    """

    def __init__(self, configs: Sequence[ViewConfig], preprocess: PreprocessConfig,
                 channels_last: bool = False) -> None:
        if not configs:
            raise ValueError("need at least one view config")
        self.configs = list(configs)
        self.channels = preprocess.input_size[0]
        self.mean = torch.tensor(preprocess.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(preprocess.std).view(1, -1, 1, 1)
        self.channels_last = channels_last
        self.groups: dict[tuple[int, int], list[int]] = {}
        for i, config in enumerate(self.configs):
            self.groups.setdefault(config.size, []).append(i)

    def _to_channels(self, images: Tensor) -> Tensor:
        channels = images.shape[1]
        if channels == self.channels:
            return images
        if channels == 1 and self.channels == 3:
            return images.expand(-1, 3, -1, -1)
        if channels == 3 and self.channels == 1:
            return _grey(images.float()).round().to(images.dtype)
        raise ValueError(f"images have {channels} channels; the encoder expects {self.channels}")

    @torch.no_grad()
    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> list[Tensor]:
        """``images``: uint8 ``[B, C, H, W]`` → one float ``[B, C, h, w]`` standardised view per config."""
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected a uint8 [B, C, H, W] batch, got {images.dtype} {tuple(images.shape)}")
        images = self._to_channels(images)
        batch, channels, height, width = images.shape
        # A channels-last batch from the loader gets channels-last views (no layout change at the conv).
        channels_last = self.channels_last or (channels > 1 and not images.is_contiguous()
                                               and images.is_contiguous(memory_format=torch.channels_last))
        source = images.float().contiguous()
        out: list[Tensor | None] = [None] * len(self.configs)
        for size, members in self.groups.items():
            configs = [self.configs[i] for i in members]
            params = _sample(configs, batch, height, width, generator)
            views = self._augment(source, params, size, len(configs))
            if channels_last:
                views = views.contiguous(memory_format=torch.channels_last)
            for i, view in zip(members, views.chunk(len(configs)), strict=True):
                out[i] = view
        return [v for v in out if v is not None]

    def _augment(self, source: Tensor, p: _Params, size: tuple[int, int], n_views: int) -> Tensor:
        # Pixels stay in [0, 255] until the end, where one multiply-add divides by 255 and standardises.
        batch = source.shape[0]
        device = source.device
        index = torch.arange(batch, dtype=torch.float32).repeat(n_views)[:, None]
        boxes = torch.cat([index, p.cat("boxes")], dim=1).to(device)
        x = roi_align(source, boxes, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        flip = p.cat("flip").to(device)
        if bool(flip.any()):
            x[flip] = x[flip].flip(-1)
        x = self._jitter(x, p)
        sigma = p.cat("sigma")
        if bool((sigma > 0).any()):
            x = _blur(x, sigma)
        solarize = _per_sample(p.cat("solarize"), x).bool()
        if bool(solarize.any()):
            x = torch.where(solarize & (x >= 128.0), 255.0 - x, x)
        scale = (1.0 / (255.0 * self.std)).to(device)
        return torch.addcmul((-self.mean / self.std).to(device), x, scale)

    @staticmethod
    def _jitter(x: Tensor, p: _Params) -> Tensor:
        x = (x * _per_sample(p.cat("brightness"), x)).clamp_(0.0, 255.0)
        mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * _per_sample(p.cat("contrast"), x) + mean).clamp_(0.0, 255.0)
        if x.shape[1] == 3:
            grey = _grey(x)
            x = ((x - grey) * _per_sample(p.cat("saturation"), x) + grey).clamp_(0.0, 255.0)
            hue = p.cat("hue")
            if bool((hue != 0).any()):
                x = _hue_rotate(x, hue).clamp_(0.0, 255.0)
            x = torch.where(_per_sample(p.cat("grey"), x).bool(), _grey(x).expand_as(x), x)
        return x


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _is_small(size: tuple[int, int]) -> bool:
    return max(size) <= _SMALL


def _blur_sigma(size: tuple[int, int]) -> tuple[float, float]:
    """σ ∈ (0.1, 2.0) px at 224 px (SimCLR App. A), scaled to the output size."""
    factor = max(size) / 224
    return (0.1 * factor, 2.0 * factor)


def _base(size: tuple[int, int], **fields: Any) -> ViewConfig:
    return ViewConfig(size=size, blur_sigma=_blur_sigma(size), **fields)


def simclr_views(size: int | Sequence[int], **overrides: Any) -> list[ViewConfig]:
    """SimCLR's pair (Chen et al. 2020, App. A).

    Crop from 8%, flip, jitter s=1 → (0.8, 0.8, 0.8, 0.2) at p=0.8, grey 0.2, blur 0.5.

    Small images: crops from 20% of the area rather than 8% (an 8% crop of 28 px is an 8-px patch;
    MoCo v2 and SimSiam use 0.2), jitter strength 0.5 (their CIFAR setting: 0.4, 0.4, 0.4, 0.1) and no
    blur (App. B.9 omits it for CIFAR-10).
    """
    s = _size(size)
    if _is_small(s):
        config = _base(s, scale=(0.2, 1.0), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    else:
        config = _base(s, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, blur_p=0.5)
    return [config.replace(**overrides)] * 2


def byol_views(size: int | Sequence[int], **overrides: Any) -> list[ViewConfig]:
    """BYOL's asymmetric pair (Grill et al. 2020, App. B, Table 6).

    Jitter (0.4, 0.4, 0.2, 0.1) at 0.8, grey 0.2, blur 1.0 / 0.1, solarise 0 / 0.2. MoCo v3 and DINO's
    global crops use the same pair.

    Small images: crops from 20% of the area and no blur; the solarisation asymmetry stays.
    """
    s = _size(size)
    small = _is_small(s)
    scale = (0.2, 1.0) if small else (0.08, 1.0)
    first = _base(s, scale=scale, blur_p=0.0 if small else 1.0)
    second = _base(s, scale=scale, blur_p=0.0 if small else 0.1, solarize_p=0.2)
    return [first.replace(**overrides), second.replace(**overrides)]


def simsiam_views(size: int | Sequence[int], **overrides: Any) -> list[ViewConfig]:
    """SimSiam's pair (Chen & He 2021, App. A): MoCo v2's views.

    Crop from 20%, jitter (0.4, 0.4, 0.4, 0.1) at 0.8, grey 0.2, blur 0.5 (none for small images, as its
    CIFAR setting).
    """
    s = _size(size)
    config = _base(s, scale=(0.2, 1.0), saturation=0.4, blur_p=0.0 if _is_small(s) else 0.5)
    return [config.replace(**overrides)] * 2


def dino_views(global_size: int | Sequence[int], local_size: int | Sequence[int], num_local: int,
               global_scale: tuple[float, float] = (0.4, 1.0), local_scale: tuple[float, float] = (0.05, 0.4),
               **overrides: Any) -> list[ViewConfig]:
    """DINO multi-crop (Caron et al. 2021, §3.1, App. D).

    Two global crops with BYOL's asymmetric pair and ``num_local`` local crops (blur 0.5) at a smaller
    resolution; global scale (0.4, 1), local (0.05, 0.4).

    Returns the global configs first, then the locals. Small images get no blur.
    """
    g, loc = _size(global_size), _size(local_size)
    small = _is_small(g)
    first, second = byol_views(g, scale=tuple(global_scale))
    local = _base(loc, scale=tuple(local_scale), blur_p=0.0 if small else 0.5)
    configs = [first, second] + [local] * num_local
    return [c.replace(**overrides) for c in configs]


def mae_views(size: int | Sequence[int], **overrides: Any) -> list[ViewConfig]:
    """MAE (He et al. 2022, App. A.1): random resized crop from 20% and a flip, nothing else."""
    config = _base(_size(size), scale=(0.2, 1.0), jitter_p=0.0, grayscale_p=0.0)
    return [config.replace(**overrides)]


def ijepa_views(size: int | Sequence[int], **overrides: Any) -> list[ViewConfig]:
    """I-JEPA (Assran et al. 2023, App. A): random resized crop from 30% only, no flip or colour."""
    config = _base(_size(size), scale=(0.3, 1.0), hflip_p=0.0, jitter_p=0.0, grayscale_p=0.0)
    return [config.replace(**overrides)]
