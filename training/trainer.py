"""The trainer: one loop for every method, one process or many.

It knows the method only through its contract (:class:`training.methods.base.Method`):
``training_step(batch) -> {"loss", scalars..., "embeddings"}``, ``on_step_end(step, total_steps)`` and an
optional ``param_groups(weight_decay)``. Everything else is here: AdamW/LARS with cosine learning-rate and
weight-decay schedules, bf16 autocast (CPU) or AMP (GPU), channels-last, gradient accumulation and
clipping, DDP under ``torchrun``, ``metrics.jsonl`` with collapse diagnostics, a progress bar, and
checkpoints from which a killed run resumes to the same loss curve.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.data import BatchLoader
from training.diagnostics import CollapseMonitor
from training.distributed import DistInfo, all_reduce_mean, any_rank, setup
from training.methods.base import Method
from training.optim import build_optimizer, method_param_groups
from training.schedules import CosineSchedule, warmup_steps_for
from zoo.errors import ConfigError, SslzooError

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"
MAX_BAD_STEPS = 5
Callback = Callable[[int, dict[str, Any]], None]


class TrainingError(SslzooError):
    """Training cannot go on (the loss became NaN or infinite)."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or time-budget-stopped) run did."""

    steps: int
    total_steps: int
    epochs: float
    images_seen: int
    seconds: float
    img_per_s: float
    final_loss: float
    stopped_early: bool


class _StepModule(nn.Module):
    """Makes ``training_step`` the ``forward`` so DDP's gradient hooks see it."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Any]:
        return self.method.training_step(batch)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: plain fp32)."""
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or device.type != "cuda":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def check_batch_size(method: Method, batch_size: int, name: str = "") -> None:
    """Refuse a per-process batch smaller than the method's ``min_batch_size``."""
    minimum = method.min_batch_size
    if batch_size < minimum:
        label = name or type(method).__name__
        raise ConfigError(f"method {label!r} needs at least {minimum} images per batch (min_batch_size={minimum}), "
                          f"got --batch-size {batch_size}")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (each rank passes its own seed so augmentations differ)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _scalars(outputs: dict[str, Any]) -> dict[str, Tensor]:
    return {k: v.detach().float().reshape(()) for k, v in outputs.items()
            if k != "embeddings" and isinstance(v, Tensor) and v.numel() == 1}


class Trainer:
    """Trains a method on a uint8 image array and writes logs and checkpoints to ``run_dir``.

    Args:
        method: A registered method instance (its encoder inside).
        images: uint8 ``[N, H, W, C]``: the whole training set (the loader slices batches from it).
        config: Optimisation, precision, logging and checkpoint settings.
        run_dir: Where ``metrics.jsonl`` and ``checkpoints/`` go.
        dist_info: This process's rank and device; read from the ``torchrun`` environment if None.
        callbacks: Called on every rank after each optimiser step with ``(steps_done, logged_row)``
            (the row is empty between log steps).
        name: The method's registry name, for messages.
    """

    def __init__(self, method: Method, images: np.ndarray | Tensor, config: TrainConfig, run_dir: Path, *,
                 dist_info: DistInfo | None = None, callbacks: Sequence[Callback] = (), name: str = "") -> None:
        self.config, self.run_dir, self.name = config, Path(run_dir), name or type(method).__name__
        self.dist = dist_info or setup(config.device)
        self.callbacks = list(callbacks)
        check_batch_size(method, config.batch_size, self.name)
        device = self.dist.device
        self.loader = BatchLoader(images, config.batch_size, seed=config.seed, rank=self.dist.rank,
                                  world_size=self.dist.world_size, device=device, channels_last=config.channels_last)
        self.method = method.to(device)
        if config.channels_last:
            self.method.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if config.sync_bn and self.dist.world_size > 1:
            self.method = nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
        self.model: nn.Module = _StepModule(self.method)
        if self.dist.world_size > 1:
            self.model = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=config.find_unused_parameters)
        groups = method_param_groups(self.method, config.weight_decay)
        self.optimizer = build_optimizer(config.optimizer, groups, config.lr, config.betas, config.momentum)
        self.total_steps = self._total_steps()
        warmup = warmup_steps_for(self.total_steps, config.warmup_steps, config.warmup_fraction)
        self.lr_schedule = CosineSchedule(config.lr, config.min_lr, self.total_steps, warmup)
        wd_end = config.weight_decay if config.weight_decay_end is None else config.weight_decay_end
        self.wd_schedule = CosineSchedule(config.weight_decay, wd_end, self.total_steps, 0, config.weight_decay)
        self.dtype = autocast_dtype(config.precision, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.monitor = CollapseMonitor(grace_steps=warmup)
        self.skipped_steps = self.bad_steps_in_row = 0

    def _total_steps(self) -> int:
        if self.config.steps is not None:
            return self.config.steps
        if self.config.epochs is None:
            raise ConfigError("give the run length: train.steps or train.epochs")
        per_epoch = len(self.loader) / self.config.accum_steps
        return max(1, math.floor(self.config.epochs * per_epoch))

    @property
    def images_per_step(self) -> int:
        """Images the optimiser sees per step, over all processes."""
        return self.config.batch_size * self.dist.world_size * self.config.accum_steps

    def _set_hyperparameters(self, step: int) -> tuple[float, float]:
        lr, wd = self.lr_schedule(step), self.wd_schedule(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
            group["weight_decay"] = wd * group.get("wd_scale", 1.0)
        return lr, wd

    def _optimizer_step(self, batches: Iterator[dict[str, Tensor]]) -> tuple[dict[str, Tensor], Tensor | None]:
        """Forward/backward over ``accum_steps`` micro-batches, then clip and step."""
        accum, embeddings = self.config.accum_steps, None
        sums: dict[str, Tensor] = {}
        for micro in range(accum):
            batch = next(batches)
            sync = micro == accum - 1 or not isinstance(self.model, DistributedDataParallel)
            with contextlib.nullcontext() if sync else self.model.no_sync():  # type: ignore[operator]
                with torch.autocast(self.dist.device.type, dtype=self.dtype or torch.bfloat16,
                                    enabled=self.dtype is not None):
                    outputs = self.model(batch)
                if "loss" not in outputs:
                    raise ConfigError(f"{self.name}.training_step returned no 'loss' (keys: {sorted(outputs)})")
                self.scaler.scale(outputs["loss"] / accum).backward()
            for key, value in _scalars(outputs).items():
                sums[key] = sums[key] + value / accum if key in sums else value / accum
            embeddings = outputs.get("embeddings")
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip or math.inf)
        if self.scaler.is_enabled() or self._gradients_finite(grad_norm):
            self.scaler.step(self.optimizer)  # an fp16 scaler skips non-finite steps itself
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        sums["grad_norm"] = grad_norm.detach().float()
        return sums, embeddings

    def _gradients_finite(self, grad_norm: Tensor) -> bool:
        """False (and the step skipped) for NaN/inf gradients; too many in a row is an error."""
        if bool(torch.isfinite(grad_norm)):
            self.bad_steps_in_row = 0
            return True
        self.skipped_steps += 1
        self.bad_steps_in_row += 1
        if self.skipped_steps == 1:
            log.warning("non-finite gradients: optimiser step skipped. Under bf16 on CPU, PyTorch 2.14 computes "
                        "the weight gradient of a stride-2 convolution on a 1x1 map wrongly (a ResNet on inputs "
                        "of 16 px or less): give it model.arch_args.output_stride: 16, a larger img_size, or "
                        "train.precision: fp32")
        if self.bad_steps_in_row >= MAX_BAD_STEPS:
            raise TrainingError(f"{self.bad_steps_in_row} optimiser steps in a row had non-finite gradients; "
                                "lower the learning rate or use train.precision: fp32")
        return False

    def _log_row(self, step: int, scalars: dict[str, Tensor], embeddings: Tensor | None,
                 lr: float, wd: float, img_s: float, elapsed: float) -> dict[str, Any]:
        keys = sorted(scalars)
        values = all_reduce_mean(torch.stack([scalars[k] for k in keys])).tolist() if keys else []
        row: dict[str, Any] = {"step": step, "epoch": step * self.config.accum_steps / len(self.loader),
                               "lr": lr, "wd": wd, **dict(zip(keys, values, strict=True))}
        if not math.isfinite(row["loss"]):
            raise TrainingError(f"step {step}: the loss is not finite ({row}); lower the learning rate or use "
                                f"fp32 precision")
        row["skipped_steps"] = self.skipped_steps
        if embeddings is not None and embeddings.ndim == 2 and embeddings.shape[0] > 1:
            row.update(self.monitor.check(embeddings, step))
        row.update({"img_s": img_s, "elapsed_s": elapsed})
        return row

    def _prepare_run_dir(self, resume: bool) -> int:
        """Restore the latest checkpoint (``resume``) and trim logs after it; returns the starting step."""
        checkpoint = latest_checkpoint(self.run_dir)
        metrics = self.run_dir / METRICS_FILE
        if checkpoint is not None and not resume:
            raise ConfigError(f"{self.run_dir} already holds a run (checkpoint {checkpoint.name}); "
                              "pass --resume to continue it, or choose another --out")
        start = 0
        if resume and checkpoint is not None:
            state = load_checkpoint(checkpoint, self.method, self.optimizer, rank=self.dist.rank)
            start = int(state["step"])
            self.method.on_resume(start, self.total_steps)
            self.scaler.load_state_dict(state.get("scaler") or {})
            self.monitor.collapsing = bool(state.get("collapsing", False))
            self.skipped_steps = int(state.get("skipped_steps", 0))
            log.info("resuming %s from step %d of %d", self.run_dir, start, self.total_steps)
        elif resume:
            log.warning("%s has no checkpoint yet: starting from step 0", self.run_dir)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            rows = [line for line in metrics.read_text().splitlines() if line.strip()] if metrics.exists() else []
            kept = [line for line in rows if start and json.loads(line)["step"] <= start]
            metrics.write_text("".join(line + "\n" for line in kept))
        return start

    def _checkpoint(self, step: int) -> None:
        state = {"scaler": self.scaler.state_dict(), "collapsing": self.monitor.collapsing,
                 "skipped_steps": self.skipped_steps,
                 "total_steps": self.total_steps, "config": asdict(self.config),
                 "data": {"seed": self.config.seed, "micro_batch": step * self.config.accum_steps,
                          "position": asdict(self.loader.position(step * self.config.accum_steps)),
                          "world_size": self.dist.world_size, "batch_size": self.config.batch_size}}
        save_checkpoint(self.run_dir, step, self.method, self.optimizer, state, rank=self.dist.rank,
                        keep=self.config.keep_checkpoints)

    def _record(self, step: int, scalars: dict[str, Tensor], embeddings: Tensor | None, lr: float, wd: float,
                clock: _Clock, out: Any, bar: tqdm) -> dict[str, Any]:
        """Log step ``step`` (all ranks reduce, rank 0 writes) and return the row."""
        now = time.perf_counter()
        img_s = (step - clock.last_step) * self.images_per_step / max(now - clock.last_time, 1e-9)
        row = self._log_row(step, scalars, embeddings if self.dist.is_main else None, lr, wd, img_s,
                            now - clock.began)
        clock.last_step, clock.last_time, clock.loss = step, now, row["loss"]
        if out is not None:
            out.write(json.dumps(row) + "\n")
            out.flush()
        bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{img_s:.0f}")
        return row

    def fit(self, resume: bool = False) -> TrainResult:
        """Train to ``total_steps`` (or until ``max_time_s``), resuming from the run dir if asked."""
        cfg = self.config
        start = self._prepare_run_dir(resume)
        if start == 0:
            seed_everything(cfg.seed + 1000 * self.dist.rank)
        self.method.train()
        batches = self.loader.batches(start * cfg.accum_steps)
        bar = tqdm(total=self.total_steps, initial=start, desc=self.name, dynamic_ncols=True,
                   disable=not (cfg.progress and self.dist.is_main))
        clock = _Clock(start)
        step, stopped = start, False
        metrics = (self.run_dir / METRICS_FILE).open("a") if self.dist.is_main else contextlib.nullcontext()
        with bar, metrics as out:
            for step in range(start + 1, self.total_steps + 1):
                lr, wd = self._set_hyperparameters(step - 1)
                scalars, embeddings = self._optimizer_step(batches)
                self.method.on_step_end(step - 1, self.total_steps)
                bar.update(1)
                stopped = cfg.max_time_s is not None and any_rank(clock.elapsed() > cfg.max_time_s, self.dist.device)
                row: dict[str, Any] = {}
                if step % cfg.log_every == 0 or step == self.total_steps or stopped:
                    row = self._record(step, scalars, embeddings, lr, wd, clock, out, bar)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step != self.total_steps:
                    self._checkpoint(step)
                for callback in self.callbacks:
                    callback(step, row)
                if stopped:
                    log.info("time budget of %.0f s reached at step %d of %d", cfg.max_time_s, step, self.total_steps)
                    break
        self._checkpoint(step)
        prior_seconds, prior_loss = _earlier_sessions(self.run_dir / METRICS_FILE, start)
        seconds = prior_seconds + clock.elapsed()  # the whole run's training time, across resumes
        return TrainResult(steps=step, total_steps=self.total_steps,
                           epochs=step * cfg.accum_steps / len(self.loader), images_seen=step * self.images_per_step,
                           seconds=seconds, img_per_s=step * self.images_per_step / max(seconds, 1e-9),
                           final_loss=prior_loss if step == start and prior_loss is not None else clock.loss,
                           stopped_early=stopped)


def _earlier_sessions(metrics_file: Path, start: int) -> tuple[float, float | None]:
    """Training seconds logged before ``start`` (each session's clock starts at 0) and the last loss logged.

    A run resumed at its last step trains no step in the new session; its result is still the run's.
    """
    if start == 0 or not metrics_file.is_file():
        return 0.0, None
    seconds, session, loss = 0.0, 0.0, None
    for line in metrics_file.read_text().splitlines():
        row = json.loads(line)
        if row.get("step", 0) > start:
            break
        elapsed = float(row.get("elapsed_s", 0.0))
        if elapsed < session:  # a new session began
            seconds += session
        session, loss = elapsed, row.get("loss", loss)
    return seconds + session, loss


@dataclass
class _Clock:
    """Wall-clock bookkeeping for throughput between log steps."""

    last_step: int
    began: float = 0.0
    last_time: float = 0.0
    loss: float = float("nan")

    def __post_init__(self) -> None:
        self.began = self.last_time = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since training (re)started in this process."""
        return time.perf_counter() - self.began
