"""Record, every N steps, where a fixed probe set's two views land in embedding space.

A contrastive loss pulls the two views of an image together and pushes other images apart; the only way
to *see* that happen is to embed the same pairs, made with the same augmentation, at many points of a
run. :class:`ProbeRecorder` does that: it draws both views of a small fixed set of images from a seeded
generator (so step 100 and step 2000 look at exactly the same crops), embeds them with the method's
encoder in eval mode, and writes ``RUN_DIR/probe/step_XXXXXXX.npz`` with ``view1``, ``view2`` (float32
``[N, D]``), ``labels`` (int64, -1 when unknown) and ``step``. :mod:`training.animate` turns the files
into an animation.

The trainer calls it as ``recorder(step, method)``; :meth:`ProbeRecorder.callback` adapts it to the
trainer's ``callbacks`` signature ``(step, logged_row)`` for code that builds the method first.
``sslzoo train`` builds one from the recipe's ``train.probe_every`` and ``train.probe_size``
(:func:`training.run.probe_recorder`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from zoo.errors import ConfigError

log = logging.getLogger(__name__)
PROBE_DIR = "probe"
META_FILE = "meta.json"
#: ``view_fn(images, generator)``: uint8 ``[B, C, H, W]`` → at least two standardised float views ``[B, C, h, w]``.
ViewFn = Callable[[Tensor, torch.Generator], Sequence[Tensor]]


def probe_path(run_dir: Path, step: int) -> Path:
    """Where the probe of ``step`` is written (zero-padded, so names sort by step)."""
    return Path(run_dir) / PROBE_DIR / f"step_{step:07d}.npz"


def recorded_steps(run_dir: Path | str) -> list[int]:
    """The steps a run has probe files for, in order."""
    return sorted(int(p.stem.removeprefix("step_")) for p in (Path(run_dir) / PROBE_DIR).glob("step_*.npz"))


def check_two_views(method: nn.Module, name: str, sample_uint8: np.ndarray) -> None:
    """Refuse a method whose ``views`` makes fewer than two views: the probe records positive pairs.

    Args:
        method: The training method (its ``views`` is called once on ``sample_uint8``).
        name: Its registry name, for the message.
        sample_uint8: A few images, uint8 ``[N, H, W, C]`` (two are used).

    Raises:
        ConfigError: No ``views``, or a single view per image (MAE, I-JEPA, CLIP).
    """
    views = getattr(method, "views", None)
    count = 0
    if callable(views):
        sample = torch.from_numpy(np.array(sample_uint8[:2])).permute(0, 3, 1, 2).contiguous()
        count = len(views(sample, torch.Generator().manual_seed(0)))
    if count < 2:
        what = f"makes {count} view per image" if callable(views) else "has no 'views'"
        raise ConfigError(f"method {name!r} {what}, and train.probe_every records the two views of each probe "
                          f"image (the positive pairs of simclr-like methods); set train.probe_every to 0 for {name}")


def _is_main_process() -> bool:
    """Rank 0 (or no process group): every rank trains the same weights, one writes."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()
                and torch.distributed.get_rank() != 0)


def _encoder_of(method: nn.Module) -> nn.Module:
    """The part whose output is the representation: ``method.encoder()`` for a training method, else itself."""
    getter = getattr(method, "encoder", None)
    encoder = getter() if callable(getter) else method
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"{type(method).__name__}.encoder() returned {type(encoder).__name__}, not a module")
    return encoder


class ProbeRecorder:
    """Embeds both views of a fixed probe set every ``every_n_steps`` and saves them under ``run_dir/probe``.

    Args:
        run_dir: The run folder (``probe/`` is created inside it).
        images_uint8: The probe images, uint8 ``[N, H, W, C]`` (a dataset's layout). Keep N small
            (32-128): every record embeds ``2N`` images, and the animation draws every pair.
        every_n_steps: Record when ``step % every_n_steps == 0``.
        view_fn: Makes the views from uint8 ``[N, C, H, W]`` and a generator, e.g. the method's own
            ``BatchViews`` (``method.views``), so the pairs are the ones the loss sees. ``None`` uses
            ``method.views`` at record time.
        labels: Optional class per probe image (colours in the animation).
        class_names: Optional names of those classes (written to ``probe/meta.json``).
        seed: Seeds the augmentation; the same seed at every record is what keeps the pairs fixed.
        batch_size: Images per encoder call.

    Raises:
        ValueError: Images that are not uint8 ``[N, H, W, C]``, fewer than two of them, labels of
            another length, or ``every_n_steps < 1``.
    """

    def __init__(self, run_dir: Path | str, images_uint8: np.ndarray, every_n_steps: int,
                 view_fn: ViewFn | None = None, *, labels: Sequence[int] | np.ndarray | None = None,
                 class_names: Sequence[str] | None = None, seed: int = 0, batch_size: int = 256) -> None:
        images = np.asarray(images_uint8)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"probe images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
        if len(images) < 2:
            raise ValueError("a probe needs at least two images (uniformity compares distinct images)")
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be at least 1, got {every_n_steps}")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(labels)} labels for {len(images)} probe images")
        self.run_dir = Path(run_dir)
        self.every_n_steps = int(every_n_steps)
        self.view_fn = view_fn
        self.seed = int(seed)
        self.batch_size = max(1, int(batch_size))
        self.images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
        self.labels = (np.full(len(images), -1, dtype=np.int64) if labels is None
                       else np.asarray(labels, dtype=np.int64))
        self.class_names = list(class_names) if class_names is not None else None
        self.recorded: list[int] = []

    @property
    def folder(self) -> Path:
        """``run_dir/probe``."""
        return self.run_dir / PROBE_DIR

    def due(self, step: int) -> bool:
        """Whether ``step`` is one to record."""
        return step % self.every_n_steps == 0

    def __call__(self, step: int, method: nn.Module) -> Path | None:
        """Record when ``step`` is due (on rank 0 only); returns the file written, if any."""
        if not self.due(step) or not _is_main_process():
            return None
        return self.record(step, method)

    def callback(self, method: nn.Module) -> Callable[[int, dict[str, Any]], None]:
        """This recorder as a trainer callback ``(step, logged_row)``, bound to ``method``."""

        def on_step(step: int, row: dict[str, Any]) -> None:
            self(step, method)

        return on_step

    def views(self, method: nn.Module) -> tuple[Tensor, Tensor]:
        """The two views of every probe image, from a generator seeded afresh (identical on every call)."""
        view_fn = self.view_fn or getattr(method, "views", None)
        if view_fn is None:
            raise ValueError(f"{type(method).__name__} has no 'views'; pass view_fn to ProbeRecorder")
        generator = torch.Generator().manual_seed(self.seed)
        made = view_fn(self.images, generator)
        if len(made) < 2:
            raise ValueError(f"view_fn returned {len(made)} view(s); the probe needs two")
        return made[0], made[1]

    @torch.inference_mode()
    def embed(self, method: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """Both views through the method's encoder in eval mode (its mode is restored afterwards)."""
        encoder = _encoder_of(method)
        first = next(encoder.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
        view1, view2 = self.views(method)
        was_training = encoder.training
        encoder.eval()
        try:
            out = [torch.cat([encoder(v[i : i + self.batch_size].to(device)).float().cpu()
                              for i in range(0, len(v), self.batch_size)]).numpy()
                   for v in (view1, view2)]
        finally:
            encoder.train(was_training)
        return out[0].astype(np.float32, copy=False), out[1].astype(np.float32, copy=False)

    def record(self, step: int, method: nn.Module) -> Path:
        """Embed the probe now and write ``probe/step_XXXXXXX.npz`` atomically (readers never see half a file)."""
        view1, view2 = self.embed(method)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_meta(method)
        target = probe_path(self.run_dir, step)
        tmp = target.with_name(f".{target.name}.tmp")
        with open(tmp, "wb") as handle:
            np.savez(handle, view1=view1, view2=view2, labels=self.labels, step=np.int64(step))
        os.replace(tmp, target)
        self.recorded.append(step)
        return target

    def _write_meta(self, method: nn.Module) -> None:
        path = self.folder / META_FILE
        if path.exists():
            return
        meta = {"method": getattr(method, "name", type(method).__name__), "every_n_steps": self.every_n_steps,
                "seed": self.seed, "num_images": len(self.images), "image_shape": list(self.images.shape[1:]),
                "class_names": self.class_names}
        path.write_text(json.dumps(meta, indent=2))


def pick_probe(labels: np.ndarray | None, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` probe images, balanced over classes when labels are known (every colour shows)."""
    if labels is None:
        return np.arange(max(0, n), dtype=np.int64)
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    picked: list[int] = []
    for i in range(max(len(p) for p in per_class)):
        for members in per_class:
            if i < len(members) and len(picked) < n:
                picked.append(int(members[i]))
    return np.array(sorted(picked), dtype=np.int64)
