"""CLIP (Radford et al. 2021): contrastive image–text pre-training, with LiT's locked towers (Zhai et al. 2022).

Each step embeds the batch's images and one caption per image (picked from the dataset's several
phrasings), both L2-normalised in a joint space, and minimises the symmetric cross-entropy of
``exp(logit_scale) · I Tᵀ`` (§2.3, Fig. 3), ``logit_scale`` learnable and clamped at ln 100. Under DDP
the loss gathers every rank's embeddings as negatives.

LiT: ``lock_image`` / ``lock_text`` freeze a tower's trunk (and keep its BatchNorm statistics) while
its projection still trains; the trunk then runs without autograd. With both locked only the two
projections and the temperature learn (the benchmark's fast path precomputes the trunks' features).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.clip.build import build_clip_model
from training.clip.captions import CaptionTable, build_caption_table
from training.methods import METHODS
from training.methods.base import Method
from training.parts.losses.clip import ClipLoss
from training.parts.views import BatchViews, ViewConfig
from zoo.clip import ClipModel
from zoo.config import ImageTowerInfo
from zoo.data import ImageDataset
from zoo.encoders import ImageEncoder
from zoo.text import trim_padding


def clip_view(size: tuple[int, int], crop_scale: float = 1.0) -> ViewConfig:
    """Resize (and, with ``crop_scale`` < 1, a mild random crop): no flips or colour changes.

    Captions name colours and positions ("a red circle on the left"), so flips, jitter and grey
    would make them false.
    """
    return ViewConfig(size=size, scale=(crop_scale, 1.0), ratio=(1.0, 1.0) if crop_scale >= 1.0 else (0.9, 1.1),
                      hflip_p=0.0, jitter_p=0.0, grayscale_p=0.0)


def image_trunk_and_head(model: ClipModel) -> tuple[Any, nn.Module]:
    """The timm backbone and its classifier (our projection head; ``Identity`` without one).

    The backbone is typed ``Any``: timm's model API (``forward_features``, ``forward_head``,
    ``get_classifier``, stage attributes) is a convention of its classes, not declared on ``nn.Module``.
    """
    backbone: Any = model.visual.backbone
    return backbone, backbone.get_classifier()


class Clip(Method):
    """CLIP training around a :class:`ClipModel` and the dataset's :class:`CaptionTable`.

    Args:
        model: Image tower, text tower and ``logit_scale``.
        captions: Tokenized captions, indexed by the trainer's ``batch["index"]``.
        lock_image: Freeze the image trunk (LiT); its projection head still trains.
        lock_text: Freeze the text trunk; its projection still trains.
        loss: The symmetric contrastive loss (default gathers negatives across ranks).
        crop_scale: Smallest crop area of the mild crop augmentation (1.0: none).
        seed: Seeds the caption choice.
    """

    def __init__(self, model: ClipModel, captions: CaptionTable, *, lock_image: bool = False,
                 lock_text: bool = False, loss: ClipLoss | None = None, crop_scale: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__()
        if len(captions.offsets) < 2:
            raise ValueError("the caption table is empty")
        self.model, self.captions = model, captions
        self.lock_image, self.lock_text, self.seed = lock_image, lock_text, seed
        self.loss = loss or ClipLoss()
        self.views = BatchViews([clip_view(model.config.preprocess.input_size[1:], crop_scale)],
                                model.config.preprocess)
        self.step = 0
        self._text_done = torch.zeros(len(captions.ids), dtype=torch.bool)
        self._text_cache: Tensor | None = None
        backbone, head = image_trunk_and_head(model)
        if lock_image:
            _freeze(backbone, keep=head)
        if lock_text:
            _freeze(model.text.tower, keep=getattr(model.text.tower, "projection", None))

    @classmethod
    def from_dataset(cls, dataset: ImageDataset, *, encoder: ImageEncoder | None = None, image: str = "resnet_narrow",
                     text: str = "transformer", embed_dim: int = 256, img_size: int | None = None,
                     context_length: int = 32, positives: str = "caption", lock_image: bool = False,
                     lock_text: bool = False, crop_scale: float = 1.0, seed: int = 0, **model_args: Any) -> Clip:
        """Build the pair (see :func:`training.clip.build.build_clip_model`) and the caption table.

        ``encoder`` (the trainer's recipe-built image encoder, with a projection head) replaces ``image``.
        """
        model = build_clip_model(dataset, image=encoder if encoder is not None else image, text=text,
                                 embed_dim=encoder.embed_dim if encoder is not None else embed_dim,
                                 img_size=img_size, context_length=context_length, **model_args)
        table = build_caption_table(dataset, model.text.tokenizer, context_length, positives)
        return cls(model, table, lock_image=lock_image, lock_text=lock_text, crop_scale=crop_scale, seed=seed)

    def train(self, mode: bool = True) -> Clip:
        """Locked trunks stay in eval mode (BatchNorm statistics and dropout frozen, as LiT does)."""
        super().train(mode)
        if self.lock_image:
            self.model.visual.backbone.eval()
        if self.lock_text:
            self.model.text.tower.eval()
        return self

    def embed_images(self, pixels: Tensor) -> Tensor:
        """Unit image embeddings; a locked trunk runs without autograd."""
        if not self.lock_image:
            return self.model.visual(pixels)
        backbone, head = image_trunk_and_head(self.model)
        with torch.no_grad():
            pooled = backbone.forward_head(backbone.forward_features(pixels), pre_logits=True)
        return F.normalize(head(pooled), dim=-1)

    def embed_texts(self, rows: Tensor, device: torch.device) -> Tensor:
        """Unit text embeddings of caption ``rows``.

        A locked trunk is a fixed function of the caption, so its pooled features are computed once per
        caption row (on first use) and looked up afterwards; only the projection runs every step.
        """
        tower: Any = self.model.text.tower  # pooled/projection: the text towers' convention, not nn.Module's
        if not self.lock_text:
            ids, mask = trim_padding(self.captions.ids[rows].to(device), self.captions.mask[rows].to(device))
            return F.normalize(tower(ids, mask), dim=-1)
        todo = rows[~self._text_done[rows]].unique()
        if len(todo):
            ids, mask = trim_padding(self.captions.ids[todo].to(device), self.captions.mask[todo].to(device))
            with torch.no_grad():
                pooled = tower.pooled(ids, mask).float()
            if self._text_cache is None:
                self._text_cache = torch.zeros(len(self._text_done), pooled.shape[1], device=device)
            self._text_cache[todo.to(device)] = pooled
            self._text_done[todo] = True
        assert self._text_cache is not None
        return F.normalize(tower.projection(self._text_cache[rows.to(device)]), dim=-1)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        index = batch["index"].cpu()
        keep = self.captions.has_caption[index]
        images = batch["images"][keep.to(batch["images"].device)]
        index = index[keep]
        rows = self.captions.pick(index, self.step, self.seed)
        device = images.device
        (pixels,) = self.views(images)
        image, text = self.embed_images(pixels), self.embed_texts(rows, device)
        scale = self.model.scale()
        loss = self.loss(image, text, scale, self.captions.keys[rows].to(device))
        return {"loss": loss, "logit_scale": scale.detach(), "embeddings": image.detach(),
                "captioned": torch.tensor(float(len(index)))}

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.step = step + 1

    def encoder(self) -> ClipModel:
        """The CLIP pair, its config recording which towers trained and which stayed locked."""
        config = self.model.config
        text = dataclasses.replace(config.text, trainable=not self.lock_text) if config.text else None
        image_info = config.image_tower or ImageTowerInfo(init="random", license=config.license)
        image_info = dataclasses.replace(image_info, trainable=not self.lock_image)
        self.model.config = config.replace(text=text, image_tower=image_info)
        self.model.visual.config = self.model.config
        if text is not None:
            self.model.text.config = text
        return self.model

    def state_for_log(self) -> dict[str, Any]:
        """What is worth printing at the start of a run."""
        return {"captions": dict(self.captions.info), "lock_image": self.lock_image, "lock_text": self.lock_text}


@METHODS.register("clip")
def build_clip_method(encoder: ImageEncoder | None = None, *, dataset: ImageDataset, image: str = "resnet_narrow",
                      text: str = "transformer", embed_dim: int = 256, img_size: int | None = None,
                      context_length: int = 32, positives: str = "caption", lock_image: bool = False,
                      lock_text: bool = False, crop_scale: float = 1.0, seed: int = 0, vocab_size: int = 4096,
                      text_args: dict[str, Any] | None = None) -> Clip:
    """The registry's factory: ``METHODS.get("clip")(encoder=..., dataset=..., **method_args)``.

    Unlike the image-only methods CLIP needs the dataset (its captions), so the trainer passes it.
    """
    return Clip.from_dataset(dataset, encoder=encoder, image=image, text=text, embed_dim=embed_dim, img_size=img_size,
                             context_length=context_length, positives=positives, lock_image=lock_image,
                             lock_text=lock_text, crop_scale=crop_scale, seed=seed, vocab_size=vocab_size,
                             text_args=text_args)


def _freeze(module: nn.Module, keep: nn.Module | None) -> None:
    """``requires_grad=False`` on every parameter of ``module`` outside ``keep``."""
    kept = {id(p) for p in keep.parameters()} if keep is not None else set()
    for param in module.parameters():
        if id(param) not in kept:
            param.requires_grad_(False)
