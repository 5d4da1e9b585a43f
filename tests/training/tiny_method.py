"""A tiny SimCLR-like method for trainer tests, and a script that trains it (optionally killing itself).

It meets the Method contract with a real contrastive loss on two noisy, randomly flipped views, plus an
EMA twin of its head so that checkpoints must carry momentum state for resume to be exact.

Run as a script::

    python tests/training/tiny_method.py RUN_DIR --steps 8 --checkpoint-every 2 [--kill-at 5] [--resume]
    torchrun --nproc_per_node 2 tests/training/tiny_method.py RUN_DIR --steps 3

It writes a digest of the final parameters and the indices of its first batch per rank, so a test can
check that DDP kept the ranks in sync and gave them different images, and the steps this process trained,
so a test can tell a resumed run from one that started again.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training.methods.base import Method  # noqa: E402
from zoo.encoders import ImageEncoder, build_encoder  # noqa: E402

# Registered methods at test size: heads and predictors shrunk to fit a 1-block ViT.
SMALL_METHOD_ARGS: dict[str, dict[str, Any]] = {
    "simclr": {"hidden_dim": 64, "out_dim": 32},
    "mocov3": {"proj_hidden_dim": 64, "out_dim": 32},
    "byol": {"proj_hidden_dim": 64, "out_dim": 32},
    "simsiam": {"proj_hidden_dim": 64, "out_dim": 64, "pred_hidden_dim": 32},
    "dino": {"out_dim": 128, "hidden_dim": 64, "bottleneck_dim": 32, "num_local_crops": 2},
    "mae": {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2},
    "ijepa": {"predictor_dim": 32, "predictor_depth": 1, "predictor_heads": 2},
}
# ViT-Tiny width cut to one block, patch 4 on 16 px digits (16 tokens). (zoo.build_encoder's own embed_dim
# argument shadows timm's, and img_size only reaches timm for names starting with "vit": hence this shape.)
TINY_VIT = {"arch": "vit_tiny_patch16_224", "arch_args": {"patch_size": 4, "depth": 1, "num_heads": 3}}


def tiny_model(method: str) -> dict[str, Any]:
    """:data:`TINY_VIT`, mean-pooled for I-JEPA (which never trains the class token)."""
    return {**TINY_VIT, "pooling": "mean"} if method == "ijepa" else TINY_VIT


class TinyContrastive(Method):
    """Encoder → linear head → NT-Xent between two noisy views; an EMA copy of the head as a 'teacher'."""

    min_batch_size = 4

    def __init__(self, encoder: ImageEncoder, temperature: float = 0.5, noise: float = 0.3) -> None:
        super().__init__()
        self.backbone = encoder
        self.head = nn.Linear(encoder.embed_dim, 16)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.temperature, self.noise = temperature, noise

    def _view(self, images: Tensor) -> Tensor:
        x = images.float() / 127.5 - 1.0
        flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
        x = torch.where(flip, x.flip(-1), x)
        return x + self.noise * torch.randn_like(x)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        h0, h1 = self.backbone(self._view(batch["images"])), self.backbone(self._view(batch["images"]))
        z = F.normalize(torch.cat([self.head(h0), self.head(h1)]).float(), dim=1)
        n = h0.shape[0]
        logits = (z @ z.T / self.temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device),
                                                           float("-inf"))
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
        loss = F.cross_entropy(logits, target)
        with torch.no_grad():
            agreement = F.cosine_similarity(self.teacher_head(h0.float()), self.head(h0.float())).mean()
        return {"loss": loss, "teacher_agreement": agreement, "embeddings": h0.detach()}

    @torch.no_grad()
    def on_step_end(self, step: int, total_steps: int) -> None:
        m = 0.9 + 0.1 * step / max(total_steps, 1)
        for t, s in zip(self.teacher_head.parameters(), self.head.parameters(), strict=True):
            t.mul_(m).add_(s, alpha=1 - m)

    def encoder(self) -> ImageEncoder:
        return self.backbone


def tiny_images(n: int = 64, size: int = 12, seed: int = 0) -> np.ndarray:
    """Two classes of uint8 grey images: bright left half vs bright right half, plus noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(n, size, size, 1)).astype(np.uint8)
    labels = np.arange(n) % 2
    images[labels == 0, :, : size // 2] += 150
    images[labels == 1, :, size // 2 :] += 150
    return images


def build_tiny(seed: int = 0, size: int = 12) -> TinyContrastive:
    """The test method around a 2-block ViT-Tiny with a 32-d linear head (seeded: every process starts alike).

    A ViT rather than a tiny ResNet: under bf16 on CPU, PyTorch 2.14 gets the weight gradient of a
    stride-2 convolution on a 1×1 map wrong now and then, which a ResNet at 12 px has.
    """
    torch.manual_seed(seed)
    encoder = build_encoder("vit_tiny_patch16_224", img_size=size, in_chans=1, patch_size=4, embed_dim=32,
                            depth=2, num_heads=2)
    return TinyContrastive(encoder)


def build_registered(name: str, seed: int = 0) -> nn.Module:
    """A registered method around :data:`TINY_VIT` for 16 px grey images, with test-size heads."""
    from training.config import Recipe, from_mapping
    from training.run import build_method, build_run_encoder
    from zoo.data import ImageDataset

    recipe = from_mapping(Recipe, {"method": name, "method_args": SMALL_METHOD_ARGS.get(name, {}),
                                   "model": tiny_model(name)})
    shape = ImageDataset(name="tiny", split="train", images=tiny_images(n=2, size=16), labels=None, class_names=None,
                         captions=None, license="test", source="test")
    torch.manual_seed(seed)
    return build_method(recipe, build_run_encoder(recipe, shape))


def parameter_digest(module: nn.Module) -> str:
    """sha256 of every parameter's values, in order."""
    return hashlib.sha256(b"".join(p.detach().float().numpy().tobytes() for p in module.parameters())).hexdigest()


def main(argv: list[str] | None = None) -> int:
    from training.config import TrainConfig
    from training.distributed import teardown
    from training.trainer import Trainer

    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--checkpoint-every", type=int, default=2)
    parser.add_argument("--kill-at", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--method", help="train this registered method (at test size) instead of the tiny one")
    args = parser.parse_args(argv)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, accum_steps=args.accum, lr=3e-3,
                         warmup_steps=2, log_every=1, checkpoint_every=args.checkpoint_every, progress=False,
                         keep_checkpoints=10)

    session: list[int] = []

    def kill(step: int, row: dict[str, Any]) -> None:
        session.append(step)
        if args.kill_at and step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    method, images = (build_registered(args.method), tiny_images(size=16)) if args.method else (build_tiny(), tiny_images())
    trainer = Trainer(method, images, config, args.run_dir, callbacks=[kill], name=args.method or "tiny")
    initial = parameter_digest(trainer.method)
    result = trainer.fit(resume=args.resume)
    rank = trainer.dist.rank
    (args.run_dir / f"params_rank{rank}.txt").write_text(parameter_digest(trainer.method))
    (args.run_dir / f"initial_params_rank{rank}.txt").write_text(initial)
    first = next(trainer.loader.batches())["index"].tolist()
    (args.run_dir / f"first_batch_rank{rank}.json").write_text(json.dumps(first))
    (args.run_dir / f"session_steps_rank{rank}.json").write_text(json.dumps(session))
    teardown()
    print(f"rank {rank}: done {result.steps} steps, loss {result.final_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
