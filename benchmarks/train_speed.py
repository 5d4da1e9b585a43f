"""SimCLR training speed: lightly's standard pipeline against ours, same backbone, batch, size and views.

    python -m benchmarks.train_speed                         # fashion-mnist, batch 256, 40 timed steps
    python -m benchmarks.train_speed --steps 8 --warmup 3    # a smoke run

Both sides train the same SimCLR: a ``resnet_narrow`` (output stride 16) from ``zoo.build_encoder`` at
28 px grey, a 2-layer projection head (hidden = backbone width, 128 out), NT-Xent at τ=0.2, AdamW, batch
256, and the same augmentation distribution — our small-image SimCLR views (crop from 20% of the area,
flip 0.5, brightness and contrast 0.4 at p=0.8, no blur; grey images get no saturation or hue).

* **lightly**: ``SimCLRTransform`` per PIL image in a ``DataLoader`` with worker processes, lightly's
  ``SimCLRProjectionHead`` and ``NTXentLoss``, two forward passes per step as in lightly's examples;
  fp32 (what its examples run on a CPU), and again under bf16 autocast to separate the precision effect.
* **ours**: ``training.trainer.Trainer`` with the registered ``simclr`` method (uint8 dataset tensor,
  batched views, one pass over both views, bf16 autocast, channels-last), and again in fp32.

Throughput is source images per second (a step of batch 256 counts 256, whatever the number of views),
timed after ``--warmup`` steps. A profile then splits one of our steps into data (batch slicing),
augmentation (the method's batched views), forward (loss included), backward and optimiser, and lightly's
into waiting for the DataLoader versus compute.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from training.config import Recipe, from_mapping
from training.run import build_method, build_run_encoder
from training.trainer import Trainer
from zoo.data import ImageDataset, load_dataset

ARCH = {"arch": "resnet_narrow", "arch_args": {"output_stride": 16}}
TEMPERATURE, OUT_DIM, LR = 0.2, 128, 1e-3


class PilDataset(torch.utils.data.Dataset):
    """uint8 images as PIL (what a torchvision-style dataset hands a per-image transform)."""

    def __init__(self, images: np.ndarray, transform: Callable[[Image.Image], Any]) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Any:
        image = self.images[i]
        pil = Image.fromarray(image[:, :, 0], mode="L") if image.shape[2] == 1 else Image.fromarray(image)
        return self.transform(pil)


def lightly_transform(size: int, grey: bool) -> Any:
    """lightly's SimCLRTransform set to our small-image SimCLR views."""
    from lightly.transforms import SimCLRTransform

    channels = 1 if grey else 3
    return SimCLRTransform(input_size=size, cj_prob=0.8, cj_strength=1.0, cj_bright=0.4, cj_contrast=0.4,
                           cj_sat=0.0 if grey else 0.4, cj_hue=0.0 if grey else 0.1, min_scale=0.2,
                           random_gray_scale=0.2, gaussian_blur=0.0, hf_prob=0.5,
                           normalize={"mean": [0.5] * channels, "std": [0.5] * channels})


def build_recipe(args: argparse.Namespace, precision: str) -> Recipe:
    return from_mapping(Recipe, {
        "method": "simclr", "method_args": {"temperature": TEMPERATURE, "out_dim": OUT_DIM}, "model": ARCH,
        "data": {"name": args.data},
        "train": {"steps": args.warmup + args.steps, "batch_size": args.batch_size, "lr": LR, "precision": precision,
                  "log_every": 10_000, "checkpoint_every": 0, "progress": False, "warmup_steps": 0}})


def _forever(loader: torch.utils.data.DataLoader) -> Any:
    while True:
        yield from loader  # a new epoch re-shuffles and re-augments (itertools.cycle would replay batches)


def run_lightly(data: ImageDataset, args: argparse.Namespace, bf16: bool) -> dict[str, float]:
    """lightly's pipeline; returns img/s and the share of time spent waiting for the DataLoader."""
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    torch.manual_seed(args.seed)
    backbone = build_run_encoder(build_recipe(args, "fp32"), data)
    width = backbone.embed_dim
    model = nn.Sequential(backbone.backbone, SimCLRProjectionHead(width, width, OUT_DIM))
    criterion, optimizer = NTXentLoss(temperature=TEMPERATURE), torch.optim.AdamW(model.parameters(), lr=LR)
    loader = torch.utils.data.DataLoader(
        PilDataset(data.images, lightly_transform(data.images.shape[1], data.images.shape[3] == 1)),
        batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
        persistent_workers=args.workers > 0)
    batches = _forever(loader)
    waits, computes = [], []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        x0, x1 = next(batches)
        t1 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = criterion(model(x0), model(x1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= args.warmup:
            waits.append(t1 - t0)
            computes.append(time.perf_counter() - t1)
    total = sum(waits) + sum(computes)
    return {"img_s": args.steps * args.batch_size / total, "wait_share": sum(waits) / total}


def run_ours(data: ImageDataset, args: argparse.Namespace, precision: str) -> dict[str, float]:
    """Our trainer; img/s over the steps after warm-up (timed by a callback on every step)."""
    recipe = build_recipe(args, precision)
    torch.manual_seed(args.seed)
    method = build_method(recipe, build_run_encoder(recipe, data))
    marks: dict[int, float] = {}

    def clock(step: int, row: dict[str, Any]) -> None:
        marks[step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        Trainer(method, data.images, recipe.train, Path(tmp) / "run", callbacks=[clock], name="simclr").fit()
    seconds = marks[args.warmup + args.steps] - marks[args.warmup]
    return {"img_s": args.steps * args.batch_size / seconds}


def profile_ours(data: ImageDataset, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per step of each phase of our bf16 step, measured one phase at a time."""
    recipe = build_recipe(args, "bf16")
    torch.manual_seed(args.seed)
    method = build_method(recipe, build_run_encoder(recipe, data))
    with tempfile.TemporaryDirectory() as tmp:  # the trainer's loader, device, layout and optimiser; not its loop
        trainer = Trainer(method, data.images, recipe.train, Path(tmp) / "run", name="simclr")
    batches, optimizer = trainer.loader.batches(), trainer.optimizer
    method.train()
    times: dict[str, list[float]] = {k: [] for k in ("data", "augmentation", "forward", "backward", "optimizer")}
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        method.views(batch["images"], None)  # the augmentation alone, as training_step runs it
        t2 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = method.training_step(batch)["loss"]  # augmentation again, then forward and loss
        t3 = time.perf_counter()
        loss.backward()
        t4 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t5 = time.perf_counter()
        if step >= args.warmup:
            for key, value in zip(times, (t1 - t0, t2 - t1, (t3 - t2) - (t2 - t1), t4 - t3, t5 - t4), strict=True):
                times[key].append(value)
    return {k: statistics.median(v) for k, v in times.items()}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="fashion-mnist", help="fashion-mnist (28 px grey) or digits (16 px)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=40, help="timed steps per pipeline")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="lightly DataLoader workers")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    data = load_dataset(args.data, "train")
    print(f"# train_speed: SimCLR, {args.data} {data.images.shape[1]} px, batch {args.batch_size}, "
          f"{ARCH['arch']} {ARCH['arch_args']}, {args.steps} timed steps after {args.warmup}; torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, lightly workers {args.workers}")
    rows = [("lightly (per-image transforms, DataLoader)", "fp32", run_lightly(data, args, bf16=False)),
            ("lightly (per-image transforms, DataLoader)", "bf16", run_lightly(data, args, bf16=True)),
            ("ours (uint8 tensor, batched views)", "bf16", run_ours(data, args, "bf16")),
            ("ours (uint8 tensor, batched views)", "fp32", run_ours(data, args, "fp32"))]
    reference = rows[0][2]["img_s"]
    print("| pipeline | precision | img/s | × lightly fp32 | DataLoader wait |\n|---|---|---|---|---|")
    for name, precision, r in rows:
        wait = f"{r['wait_share']:.0%}" if "wait_share" in r else "-"
        print(f"| {name} | {precision} | {r['img_s']:.0f} | {r['img_s'] / reference:.2f} | {wait} |")
    phases = profile_ours(data, args)
    total = sum(phases.values())
    print(f"\nWhere one of our bf16 steps goes (median of {args.steps} steps, {total * 1000:.0f} ms in all):")
    print("| phase | ms | share |\n|---|---|---|")
    for phase, seconds in phases.items():
        print(f"| {phase} | {seconds * 1000:.1f} | {seconds / total:.0%} |")


if __name__ == "__main__":
    main()
