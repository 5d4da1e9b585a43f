"""LiT with both towers locked, on precomputed features: only the two projections and the temperature train.

When neither trunk changes, running them every step is wasted work: their pooled features are computed
once (the image trunk optionally on several mildly cropped views per image, as cheap augmentation),
and the projections are fitted with the same :class:`ClipLoss` and caption sampling as the generic
method. The result is written back into the :class:`ClipModel`'s own heads, so what is saved is an
ordinary CLIP entry whose forward gives exactly the embeddings trained here.

Image features are standardised (per-dimension mean and std over the training images) before the
projection; since the image head is affine, the standardisation is folded into its weight and bias
afterwards and costs nothing at inference.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.clip.captions import CaptionTable
from training.methods.clip import clip_view, image_trunk_and_head
from training.parts.losses.clip import ClipLoss
from training.parts.views import BatchViews
from zoo.clip import LOGIT_SCALE_MAX, ClipModel
from zoo.preprocess import preprocess_uint8

log = logging.getLogger(__name__)


def image_features(model: ClipModel, images: np.ndarray, views: int = 1, crop_scale: float = 0.8,
                   batch_size: int = 64, seed: int = 0) -> Tensor:
    """Pooled trunk features ``[views, N, F]`` of uint8 ``[N, H, W, C]`` images (view 0 uncropped)."""
    backbone, _ = image_trunk_and_head(model)
    backbone.eval().to(memory_format=torch.channels_last)  # outside inference mode: the weights stay trainable
    with torch.inference_mode():
        return stack_views(((v, backbone.forward_head(backbone.forward_features(pixels), pre_logits=True).float())
                            for v, pixels in view_batches(model, images, views, crop_scale, batch_size, seed)), views)


def view_batches(model: ClipModel, images: np.ndarray, views: int, crop_scale: float, batch_size: int,
                 seed: int) -> Iterator[tuple[int, Tensor]]:
    """``(view, pixels)`` batches in image order, view by view: view 0 as served, the others mild crops.

    View 0 goes through the entry's own preprocessing (:func:`zoo.preprocess.preprocess_uint8`, the
    path every served image takes), so the projection is fitted on the features it will be given:
    resampling a 32 px drawing to 224 px bilinearly instead of bicubically moves the pooled features
    enough to cost a projection fitted on one and served the other several points of zero-shot.
    """
    size = model.config.preprocess.input_size[1:]
    cropped = BatchViews([clip_view(size, crop_scale)], model.config.preprocess)
    generator = torch.Generator().manual_seed(seed)
    for v in range(views):
        for start in range(0, len(images), batch_size):
            if v == 0:
                pixels = torch.from_numpy(preprocess_uint8(images[start : start + batch_size], model.config.preprocess))
            else:
                batch = torch.from_numpy(images[start : start + batch_size]).permute(0, 3, 1, 2)
                (pixels,) = cropped(batch, generator)
            yield v, pixels.contiguous(memory_format=torch.channels_last)  # ~30% faster convolutions on CPU


def stack_views(outputs: Iterator[tuple[int, Tensor]], views: int) -> Tensor:
    """``[views, N, ...]`` from :func:`view_batches`-ordered ``(view, output)`` batches."""
    per_view: list[list[Tensor]] = [[] for _ in range(views)]
    for v, out in outputs:
        per_view[v].append(out)
    return torch.stack([torch.cat(batches) for batches in per_view])


def train_pairs(table: CaptionTable, text_feats: Tensor, embed_images: Callable[[Tensor, Tensor], Tensor],
                text_projection: nn.Module, logit_scale: Tensor, opt: torch.optim.Optimizer, *, views: int, steps: int,
                batch_size: int, warmup: int, seed: int, loss: ClipLoss,
                image_weights: Tensor | None = None, extra: Callable[[], Tensor] | None = None) -> list[float]:
    """The contrastive loop both fits share; returns the loss of every step.

    Each step draws ``batch_size`` captioned images (weighted by ``image_weights``), one view
    (``embed_images(view, pick)`` embeds them) and one caption each (:meth:`CaptionTable.pick`), and
    steps ``opt`` on the symmetric loss plus ``extra()`` if given, its learning rate on a cosine decay
    after ``warmup`` steps.
    """
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup)
                                              * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    usable = torch.nonzero(table.has_caption).squeeze(1)
    weights = (image_weights[usable] if image_weights is not None else torch.ones(len(usable))).double()
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(steps):
        pick = usable[torch.multinomial(weights, min(batch_size, len(usable)), replacement=False, generator=generator)]
        view = torch.randint(views, (len(pick),), generator=generator)
        rows = table.pick(pick, step, seed)
        image = F.normalize(embed_images(view, pick), dim=-1)
        text = F.normalize(text_projection(text_feats[rows]), dim=-1)
        value = loss(image, text, logit_scale.clamp(max=LOGIT_SCALE_MAX).exp(), table.keys[rows])
        if extra is not None:
            value = value + extra()
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        sched.step()
        losses.append(float(value.detach()))
    return losses


@dataclass(frozen=True)
class GeometryPrior:
    """Keep the neighbourhoods the locked trunk already draws, on a pool of images.

    A projection fitted to captions of a few domains keeps the directions those captions need and may
    fold away the rest, so image search (k-NN in the joint space) loses what the trunk knew about
    other images. This term is the KL divergence between each pool image's neighbour distribution in
    the trunk's raw pooled features and in the joint space (softmax over cosine similarities at
    ``temperature``, self excluded): the same weighting the k-NN read-out uses, so what it keeps is
    what a search sees. The pool needs no captions.
    """

    features: Tensor  # [N, F] raw pooled trunk features of the pool (view 0)
    weight: float = 1.0
    batch_size: int = 512
    temperature: float = 0.07


def neighbour_kl(teacher: Tensor, student: Tensor, temperature: float) -> Tensor:
    """Mean KL(teacher ‖ student) of the rows' softmax neighbour distributions (cosine, self masked)."""
    eye = torch.eye(len(teacher), dtype=torch.bool)

    def log_neighbours(x: Tensor) -> Tensor:
        unit = F.normalize(x, dim=-1)
        return F.log_softmax((unit @ unit.T / temperature).masked_fill(eye, -1e9), dim=-1)

    return F.kl_div(log_neighbours(student), log_neighbours(teacher), log_target=True, reduction="batchmean")


def geometry_term(prior: GeometryPrior, project: Callable[[Tensor], Tensor], seed: int) -> Callable[[], Tensor]:
    """One draw of :func:`neighbour_kl` per call, from its own seeded stream (the fit's draws are untouched)."""
    generator = torch.Generator().manual_seed(seed + 7919)
    n = len(prior.features)

    def term() -> Tensor:
        pick = torch.randperm(n, generator=generator)[: min(prior.batch_size, n)]
        pool = prior.features[pick]
        return prior.weight * neighbour_kl(pool, project(pool), prior.temperature)

    return term


@dataclass(frozen=True)
class TowerSketch:
    """Give part of the joint space to the trunk's own geometry: a fixed block the text side never writes.

    A projection fitted to captions of a few domains keeps what those captions need, so image search in
    the joint space loses what the trunk knew about everything else. Here the last ``dims`` of the joint
    width are the pool's top right singular vectors applied to the raw pooled features (uncentred: the
    rank-``dims`` map that keeps their dot products best), scaled so that they carry ``share`` of the
    squared norm of the pool's embeddings on average; the text projection's rows there are zero. An
    image's cosine with a text is
    then its fitted block's cosine times a factor that is the same for every text, so zero-shot ranks
    labels as a fit ``dims`` narrower would, while image-to-image similarity mixes the fitted block with
    the trunk's own. The pool needs no captions.
    """

    features: Tensor  # [N, F] raw pooled trunk features of the pool (view 0)
    dims: int = 128
    share: float = 0.7

    def __post_init__(self) -> None:
        if not 0.0 < self.share < 1.0:
            raise ValueError(f"sketch share must be in (0, 1), got {self.share}")
        if not 0 < self.dims < self.features.shape[1]:
            raise ValueError(f"sketch dims must be in (0, {self.features.shape[1]}), got {self.dims}")

    def basis(self) -> Tensor:
        """``[dims, F]``: the pool's top right singular vectors (float64 SVD, signs as LAPACK returns them)."""
        _, _, vt = torch.linalg.svd(self.features.double(), full_matrices=False)
        return vt[: self.dims].float()


def sketch_rows(sketch: TowerSketch, fitted_weight: Tensor, fitted_bias: Tensor) -> tuple[Tensor, Tensor]:
    """The sketch block's rows of the folded affine head (weight ``[dims, F]``, zero bias).

    ``fitted_weight`` / ``fitted_bias`` are the fitted block's folded head (raw features in), used only to
    size the sketch so that it carries ``sketch.share`` of the pool's mean squared norm.
    """
    basis = sketch.basis()
    fitted = (sketch.features @ fitted_weight.T + fitted_bias).pow(2).sum(-1).mean()
    raw = (sketch.features @ basis.T).pow(2).sum(-1).mean()
    scale = torch.sqrt(sketch.share / (1.0 - sketch.share) * fitted / raw)
    return scale * basis, torch.zeros(sketch.dims)


@dataclass
class FitResult:
    """What the fit did: its loss curve, final temperature and time."""

    losses: list[float] = field(default_factory=list)
    scale: float = 0.0
    seconds: float = 0.0
    image_embeddings: Tensor | None = None  # of view 0, as the fit computed them (sketch included)


def fit_projections(model: ClipModel, table: CaptionTable, image_feats: Tensor, text_feats: Tensor, *,
                    steps: int = 2000, batch_size: int = 512, lr: float = 1e-3, weight_decay: float = 0.05,
                    seed: int = 0, loss: ClipLoss | None = None, text_identity: bool = False,
                    image_weights: Tensor | None = None, geometry: GeometryPrior | None = None,
                    sketch: TowerSketch | None = None) -> FitResult:
    """Train the image head, the text projection and ``logit_scale`` on precomputed features.

    Args:
        model: The pair whose heads are trained and overwritten (``visual`` head affine, text
            projection linear).
        table: Captions of the same images, in the same order as ``image_feats``' second axis.
        image_feats: ``[V, N, F_i]`` trunk features (``V`` views of each image).
        text_feats: ``[M, F_t]`` trunk features of every caption row.
        steps: Optimiser steps (AdamW, cosine decay after a 5% warm-up).
        batch_size: Pairs per step.
        lr: Peak learning rate.
        weight_decay: On the projection matrices only.
        seed: Seeds batches, views and caption choice.
        loss: Defaults to :class:`ClipLoss`.
        text_identity: Keep the text projection at the identity (joint width = text width): the image
            head learns to map into the pretrained sentence space itself, which a few thousand
            captions cannot distort towards the training concepts.
        image_weights: Optional ``[N]`` sampling weights (e.g. ``1 / images of the concept`` so that a
            concept with 25 skin-tone variants is drawn as often as one with a single image).
        geometry: Optional :class:`GeometryPrior` added to every step's loss.
        sketch: Optional :class:`TowerSketch`: the fit trains ``sketch.dims`` fewer joint dimensions and
            the sketch fills them; the logit scale is divided by the fitted block's typical length,
            ``sqrt(1 - share)``, so that zero-shot logits keep about the scale they were fitted at.
    """
    _, head = image_trunk_and_head(model)
    projection = model.text.tower.projection
    if not isinstance(head, nn.Linear) or not isinstance(projection, nn.Linear):
        raise ValueError("the fast path needs linear projections on both towers")
    loss_fn = loss or ClipLoss(gather_distributed=False)
    mean, std = image_feats[0].mean(0), image_feats[0].std(0).clamp(min=1e-6)
    fitted_width = head.out_features - (sketch.dims if sketch is not None else 0)
    img_proj = nn.Linear(image_feats.shape[-1], fitted_width)
    txt_proj = nn.Linear(text_feats.shape[-1], fitted_width, bias=False)
    logit_scale = nn.Parameter(model.logit_scale.detach().clone())
    params = [img_proj.weight, txt_proj.weight]
    if text_identity:
        if txt_proj.in_features != txt_proj.out_features:
            raise ValueError(f"text_identity needs embed_dim = text width {txt_proj.in_features}")
        with torch.no_grad():
            txt_proj.weight.copy_(torch.eye(txt_proj.in_features))
        txt_proj.weight.requires_grad_(False)
        params = [img_proj.weight]
    opt = torch.optim.AdamW([{"params": params, "weight_decay": weight_decay},
                             {"params": [img_proj.bias, logit_scale], "weight_decay": 0.0}], lr=lr)
    result, start = FitResult(), time.perf_counter()
    result.losses = train_pairs(
        table, text_feats, lambda view, pick: img_proj((image_feats[view, pick] - mean) / std), txt_proj, logit_scale,
        opt, views=image_feats.shape[0], steps=steps, batch_size=batch_size, warmup=max(1, steps // 20), seed=seed,
        loss=loss_fn, image_weights=image_weights,
        extra=None if geometry is None else geometry_term(geometry, lambda f: img_proj((f - mean) / std), seed))
    with torch.no_grad():  # fold the standardisation into the affine head
        weight = img_proj.weight / std
        bias = img_proj.bias - weight @ mean
        text_weight, scale = txt_proj.weight, logit_scale.clamp(max=LOGIT_SCALE_MAX)
        if sketch is None:
            result.image_embeddings = F.normalize(img_proj((image_feats[0] - mean) / std), dim=-1)
        else:
            rows, zeros = sketch_rows(sketch, weight, bias)
            fitted_share = (1.0 - sketch.share) ** 0.5
            weight, bias = torch.cat([weight, rows]), torch.cat([bias, zeros])
            text_weight = torch.cat([text_weight, text_weight.new_zeros(sketch.dims, text_weight.shape[1])])
            scale = (logit_scale - math.log(fitted_share)).clamp(max=LOGIT_SCALE_MAX)
            result.image_embeddings = F.normalize(image_feats[0] @ weight.T + bias, dim=-1)
        head.weight.copy_(weight)
        head.bias.copy_(bias)
        projection.weight.copy_(text_weight)
        model.logit_scale.copy_(scale)
    result.scale, result.seconds = float(model.scale().detach()), time.perf_counter() - start
    log.info("fitted projections in %.1f s: loss %.3f → %.3f, scale %.1f", result.seconds, result.losses[0],
             result.losses[-1], result.scale)
    return result
