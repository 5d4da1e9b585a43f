"""Negatives gathered across 2 real (gloo) ranks give the single-process loss and gradient of the whole batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from training.parts.losses.clip import ClipLoss

BATCH, DIM, FEAT = 6, 8, 5


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images, texts = torch.randn(2 * BATCH, FEAT, generator=gen), torch.randn(2 * BATCH, FEAT, generator=gen)
    w_img, w_txt = torch.randn(DIM, FEAT, generator=gen), torch.randn(DIM, FEAT, generator=gen)
    return images, texts, w_img, w_txt


def _loss(images: torch.Tensor, texts: torch.Tensor, w_img: torch.Tensor, w_txt: torch.Tensor,
          keys: torch.Tensor | None) -> torch.Tensor:
    image, text = F.normalize(images @ w_img.T, dim=1), F.normalize(texts @ w_txt.T, dim=1)
    return ClipLoss()(image, text, torch.tensor(7.0), keys)


def _worker(rank: int, port: int, keyed: bool, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        images, texts, w_img, w_txt = _data()
        w_img.requires_grad_(True)
        w_txt.requires_grad_(True)
        local = slice(rank * BATCH, (rank + 1) * BATCH)
        keys = (torch.arange(2 * BATCH) % 4)[local] if keyed else None
        loss = _loss(images[local], texts[local], w_img, w_txt, keys)
        loss.backward()
        grads = torch.cat([w_img.grad.flatten(), w_txt.grad.flatten()])
        dist.all_reduce(grads)  # what DDP does (then divides by the world size)
        out[rank] = (float(loss), (grads / 2).tolist())
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("keyed", [False, True])
def test_two_ranks_equal_one_process(keyed: bool) -> None:
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), keyed, out), nprocs=2, join=True)
        results = dict(out)
    images, texts, w_img, w_txt = _data()
    w_img.requires_grad_(True)
    w_txt.requires_grad_(True)
    keys = torch.arange(2 * BATCH) % 4 if keyed else None
    full = _loss(images, texts, w_img, w_txt, keys)
    full.backward()
    mean_loss = (results[0][0] + results[1][0]) / 2
    assert mean_loss == pytest.approx(float(full.detach()), rel=1e-5)
    expected = torch.cat([w_img.grad.flatten(), w_txt.grad.flatten()])
    for rank in (0, 1):
        torch.testing.assert_close(torch.tensor(results[rank][1]), expected, rtol=1e-4, atol=1e-6)
    # Without gathering each rank would only see its own half: a different (smaller-batch) loss.
    half = ClipLoss()(F.normalize(images[:BATCH] @ w_img.T, dim=1), F.normalize(texts[:BATCH] @ w_txt.T, dim=1),
                      torch.tensor(7.0), None if keys is None else keys[:BATCH])
    assert abs(float(half.detach()) - results[0][0]) > 1e-3
