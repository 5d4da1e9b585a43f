"""Each loss against a plain, loop-by-loop reference written from its paper, on fixed inputs."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training.parts.losses import (
    LOSSES,
    DINOLoss,
    IJEPALoss,
    MAELoss,
    MoCoV3Loss,
    NegativeCosineLoss,
    NTXentLoss,
)
from zoo.errors import UnknownNameError


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster than two fighting for a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



def _inputs(b: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g), torch.randn(b, d, generator=g)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v.double() / v.double().norm()


# --------------------------------------------------------------------------------------------- NT-Xent


def ntxent_reference(z0: torch.Tensor, z1: torch.Tensor, t: float) -> float:
    """SimCLR eq. 1: for each of the 2N views, −log of its positive's share among the other 2N − 1."""
    z = [_unit(v) for v in torch.cat([z0, z1])]
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        positive = (i + n2 // 2) % n2
        denominator = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[positive]) / t) / denominator)
    return total / n2


@pytest.mark.parametrize("b", [2, 5, 16])
@pytest.mark.parametrize("d", [3, 32])
@pytest.mark.parametrize("t", [0.07, 0.5, 1.0])
def test_ntxent_matches_reference(b: int, d: int, t: float) -> None:
    z0, z1 = _inputs(b, d, seed=b * d)
    assert NTXentLoss(temperature=t)(z0, z1).item() == pytest.approx(ntxent_reference(z0, z1, t), rel=1e-5)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_ntxent_matches_lightly(t: float) -> None:
    lightly_loss = pytest.importorskip("lightly.loss")
    z0, z1 = _inputs(8, 16, seed=3)
    ours = NTXentLoss(temperature=t)(z0, z1)
    theirs = lightly_loss.NTXentLoss(temperature=t)(z0, z1)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_ntxent_is_low_for_matching_views_and_validates() -> None:
    z0, _ = _inputs(8, 16, seed=0)
    matched = NTXentLoss(0.1)(z0, z0 + 0.01 * torch.randn_like(z0))
    unrelated = NTXentLoss(0.1)(*_inputs(8, 16, seed=1))
    assert matched < unrelated
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0.0)
    with pytest.raises(ValueError, match="shape"):
        NTXentLoss()(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        NTXentLoss()(torch.randn(1, 3), torch.randn(1, 3))


# --------------------------------------------------------------------------------------------- MoCo v3


def mocov3_reference(q: torch.Tensor, k: torch.Tensor, t: float, scale: bool) -> float:
    """MoCo v3 Algorithm 1: cross-entropy of q_i over all keys with k_i the positive, times 2τ."""
    qs, ks = [_unit(v) for v in q], [_unit(v) for v in k]
    total = 0.0
    for i, qi in enumerate(qs):
        logits = [float(qi @ kj) / t for kj in ks]
        total += -logits[i] + math.log(sum(math.exp(x) for x in logits))
    loss = total / len(qs)
    return loss * 2 * t if scale else loss


@pytest.mark.parametrize("b", [2, 7, 16])
@pytest.mark.parametrize("t", [0.1, 0.2, 1.0])
@pytest.mark.parametrize("scale", [True, False])
def test_mocov3_matches_reference(b: int, t: float, scale: bool) -> None:
    q, k = _inputs(b, 24, seed=b)
    ours = MoCoV3Loss(temperature=t, scale_by_temperature=scale)(q, k)
    assert ours.item() == pytest.approx(mocov3_reference(q, k, t, scale), rel=1e-5)


def test_mocov3_validates() -> None:
    with pytest.raises(ValueError, match="temperature"):
        MoCoV3Loss(temperature=1e-5)
    with pytest.raises(ValueError):
        MoCoV3Loss()(torch.randn(3, 4), torch.randn(3, 5))


# ------------------------------------------------------------------------------------- negative cosine


@pytest.mark.parametrize("b", [1, 4, 9])
@pytest.mark.parametrize("normalized_mse", [False, True])
def test_negative_cosine_matches_reference(b: int, normalized_mse: bool) -> None:
    p, z = _inputs(b, 12, seed=b + 10)
    values = []
    for pi, zi in zip(p, z, strict=True):
        if normalized_mse:  # BYOL eq. 2: squared distance of the unit vectors
            values.append(float(((_unit(pi) - _unit(zi)) ** 2).sum()))
        else:  # SimSiam eq. 1
            values.append(-float(pi.double() @ zi.double()) / (float(pi.double().norm()) * float(zi.double().norm())))
    expected = sum(values) / b
    assert NegativeCosineLoss(normalized_mse)(p, z).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_negative_cosine_extremes_and_validation() -> None:
    v = torch.randn(4, 8)
    assert NegativeCosineLoss()(v, 3 * v).item() == pytest.approx(-1.0, abs=1e-6)
    assert NegativeCosineLoss(normalized_mse=True)(v, -v).item() == pytest.approx(4.0, abs=1e-5)
    assert torch.isfinite(NegativeCosineLoss()(torch.zeros(2, 3), torch.ones(2, 3)))
    with pytest.raises(ValueError):
        NegativeCosineLoss(eps=0.0)
    with pytest.raises(ValueError, match="shapes"):
        NegativeCosineLoss()(torch.randn(2, 3), torch.randn(2, 4))


# ------------------------------------------------------------------------------------------------ DINO


def dino_reference(teacher: list[torch.Tensor], student: list[torch.Tensor], center: torch.Tensor, t_t: float,
                   t_s: float) -> float:
    """DINO Algorithm 1, written out: H(P_t(x_i), P_s(x_j)) summed over pairs i ≠ j, averaged."""

    def softmax(row: list[float]) -> list[float]:
        top = max(row)
        exps = [math.exp(x - top) for x in row]
        return [e / sum(exps) for e in exps]

    total, terms = 0.0, 0
    for i, t in enumerate(teacher):
        for j, s in enumerate(student):
            if i == j:
                continue
            batch_loss = 0.0
            for b in range(t.shape[0]):
                p_t = softmax([(float(t[b, k]) - float(center[0, k])) / t_t for k in range(t.shape[1])])
                p_s = softmax([float(s[b, k]) / t_s for k in range(s.shape[1])])
                batch_loss += -sum(pt * math.log(ps) for pt, ps in zip(p_t, p_s, strict=True))
            total += batch_loss / t.shape[0]
            terms += 1
    return total / terms


@pytest.mark.parametrize(("b", "k", "n_crops"), [(2, 5, 2), (3, 16, 4), (4, 8, 6)])
@pytest.mark.parametrize(("t_t", "t_s"), [(0.04, 0.1), (0.07, 0.2)])
def test_dino_loss_matches_reference(b: int, k: int, n_crops: int, t_t: float, t_s: float) -> None:
    g = torch.Generator().manual_seed(b * k)
    teacher = [torch.randn(b, k, generator=g) for _ in range(2)]
    student = [torch.randn(b, k, generator=g) for _ in range(n_crops)]
    loss = DINOLoss(k, student_temp=t_s, teacher_temp=t_t)
    loss.center.copy_(0.3 * torch.randn(1, k, generator=g))
    center = loss.center.clone()
    assert loss(teacher, student).item() == pytest.approx(dino_reference(teacher, student, center, t_t, t_s),
                                                          rel=1e-5)


@pytest.mark.parametrize("m", [0.0, 0.9, 0.99])
def test_dino_center_update(m: float) -> None:
    loss = DINOLoss(6, center_momentum=m)
    loss.center.fill_(0.5)
    teacher = [torch.randn(4, 6), torch.randn(4, 6)]
    loss(teacher, [torch.randn(4, 6) for _ in range(3)])
    batch_mean = torch.cat(teacher).mean(dim=0, keepdim=True)
    torch.testing.assert_close(loss.center, m * torch.full((1, 6), 0.5) + (1 - m) * batch_mean)


def test_dino_teacher_temperature_warmup() -> None:
    loss = DINOLoss(4, teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_fraction=0.3)
    assert loss.teacher_temperature(0, 100) == pytest.approx(0.04)
    assert loss.teacher_temperature(15, 100) == pytest.approx(0.055)
    assert loss.teacher_temperature(30, 100) == pytest.approx(0.07)
    assert loss.teacher_temperature(99, 100) == pytest.approx(0.07)
    assert DINOLoss(4, warmup_fraction=0.0).teacher_temperature(0, 100) == pytest.approx(0.07)


def test_dino_gradient_reaches_student_only() -> None:
    teacher = [torch.randn(3, 5, requires_grad=True) for _ in range(2)]
    student = [torch.randn(3, 5, requires_grad=True) for _ in range(3)]
    DINOLoss(5)(teacher, student).backward()
    assert all(t.grad is None for t in teacher) and all(s.grad is not None for s in student)


def test_dino_validates() -> None:
    for kwargs in ({"student_temp": 1e-6}, {"teacher_temp": 0.0}, {"warmup_teacher_temp": -1.0},
                   {"center_momentum": 1.0}, {"warmup_fraction": 2.0}):
        with pytest.raises(ValueError):
            DINOLoss(4, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DINOLoss(0)
    with pytest.raises(ValueError, match="teacher_temp"):
        DINOLoss(4)([torch.randn(2, 4)], [torch.randn(2, 4)] * 2, teacher_temp=1e-9)


# ------------------------------------------------------------------------------------------------- MAE


def mae_reference(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool) -> float:
    """MAE §3: mean over hidden patches of the per-patch mean squared error (target normalised per patch)."""
    total, count = 0.0, 0
    for b in range(pred.shape[0]):
        for n in range(pred.shape[1]):
            if mask[b, n] == 0:
                continue
            values = [float(v) for v in target[b, n]]
            if norm_pix:
                mean = sum(values) / len(values)
                var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)  # unbiased, as torch.var
                values = [(v - mean) / math.sqrt(var + 1e-6) for v in values]
            total += sum((float(p) - v) ** 2 for p, v in zip(pred[b, n], values, strict=True)) / len(values)
            count += 1
    return total / count


@pytest.mark.parametrize(("b", "n", "p"), [(1, 4, 3), (2, 16, 16), (3, 9, 12)])
@pytest.mark.parametrize("norm_pix", [False, True])
def test_mae_loss_matches_reference(b: int, n: int, p: int, norm_pix: bool) -> None:
    g = torch.Generator().manual_seed(n)
    pred, target = torch.randn(b, n, p, generator=g), torch.rand(b, n, p, generator=g)
    mask = (torch.rand(b, n, generator=g) < 0.6).float()
    mask[:, 0] = 1
    ours = MAELoss(norm_pix=norm_pix)(pred, target, mask).item()
    assert ours == pytest.approx(mae_reference(pred, target, mask, norm_pix), rel=1e-5)


def test_mae_loss_ignores_visible_patches() -> None:
    target = torch.rand(2, 8, 6)
    mask = torch.zeros(2, 8)
    mask[:, ::2] = 1
    pred = torch.where(mask.bool()[..., None], target, torch.full_like(target, 1e3))  # garbage where visible
    assert MAELoss(norm_pix=False)(pred, target, mask).item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no patch"):
        MAELoss()(pred, target, torch.zeros(2, 8))
    with pytest.raises(ValueError):
        MAELoss(eps=0.0)


# ----------------------------------------------------------------------------------------------- I-JEPA


def ijepa_reference(preds: list[torch.Tensor], targets: list[torch.Tensor], kind: str) -> float:
    per_block = []
    for pred, target in zip(preds, targets, strict=True):
        diffs = [abs(float(a) - float(b)) for a, b in zip(pred.flatten(), target.flatten(), strict=True)]
        huber = [0.5 * x * x if x < 1 else x - 0.5 for x in diffs]  # smooth L1 with β = 1
        values = huber if kind == "smooth_l1" else [x * x for x in diffs]
        per_block.append(sum(values) / len(values))
    return sum(per_block) / len(per_block)


@pytest.mark.parametrize("kind", ["smooth_l1", "l2"])
@pytest.mark.parametrize(("blocks", "b", "m", "d"), [(1, 2, 3, 4), (4, 3, 5, 8)])
def test_ijepa_loss_matches_reference(kind: str, blocks: int, b: int, m: int, d: int) -> None:
    g = torch.Generator().manual_seed(blocks * d)
    preds = [2 * torch.randn(b, m, d, generator=g) for _ in range(blocks)]
    targets = [torch.randn(b, m, d, generator=g) for _ in range(blocks)]
    assert IJEPALoss(kind)(preds, targets).item() == pytest.approx(ijepa_reference(preds, targets, kind), rel=1e-5)


def test_ijepa_validates() -> None:
    with pytest.raises(ValueError, match="kind"):
        IJEPALoss("l1")
    with pytest.raises(ValueError):
        IJEPALoss()([torch.randn(2, 3, 4)], [])


# ---------------------------------------------------------------------------------------------- registry


def test_every_loss_is_registered_under_its_name() -> None:
    assert LOSSES.names() == ["clip", "dino", "ijepa", "mae", "mocov3", "negative_cosine", "ntxent"]
    assert LOSSES.get("ntxent") is NTXentLoss and LOSSES.get("negative_cosine") is NegativeCosineLoss
    with pytest.raises(UnknownNameError, match=r"unknown loss 'nt-xent'; known: clip, .*, ntxent$"):
        LOSSES.get("nt-xent")


# ------------------------------------------------------------------------------ gathering across ranks

WORLD, PER_RANK, DIM = 2, 4, 6


def _rank_worker(rank: int, init_file: str, z0: torch.Tensor, z1: torch.Tensor, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        results = {}
        for name, loss_fn in (("ntxent", NTXentLoss(0.3)), ("mocov3", MoCoV3Loss(0.3))):
            a, b = z0[rows].clone().requires_grad_(), z1[rows].clone().requires_grad_()
            loss = loss_fn(a, b)
            loss.backward()
            results[name] = (loss.detach(), a.grad, b.grad)
        with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as fh:
            for name, (loss, ga, gb) in results.items():
                values = [loss.item(), *ga.flatten().tolist(), *gb.flatten().tolist()]
                fh.write(name + " " + " ".join(repr(v) for v in values) + "\n")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_losses_gather_negatives_across_two_ranks(tmp_path: Path) -> None:
    """Two gloo ranks: the mean of their losses equals one process's loss on the whole batch, and the
    gradients (averaged as DDP does) equal the single-process gradients, so the gather keeps gradients."""
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(WORLD * PER_RANK, DIM, generator=g), torch.randn(WORLD * PER_RANK, DIM, generator=g)
    mp.spawn(_rank_worker, args=(str(tmp_path / "init"), z0, z1, str(tmp_path)), nprocs=WORLD, join=True)
    per_rank = []
    for rank in range(WORLD):
        lines = (tmp_path / f"rank{rank}.txt").read_text().splitlines()
        per_rank.append({line.split()[0]: torch.tensor([float(v) for v in line.split()[1:]]) for line in lines})
    n = PER_RANK * DIM
    for name, loss_fn in (("ntxent", NTXentLoss(0.3)), ("mocov3", MoCoV3Loss(0.3))):
        a, b = z0.clone().requires_grad_(), z1.clone().requires_grad_()
        full = loss_fn(a, b)
        full.backward()
        losses = [r[name][0] for r in per_rank]
        assert float(sum(losses)) / WORLD == pytest.approx(full.item(), rel=1e-5)
        for rank, result in enumerate(per_rank):
            rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
            grad_a = result[name][1 : 1 + n].view(PER_RANK, DIM) / WORLD  # DDP averages over ranks
            grad_b = result[name][1 + n :].view(PER_RANK, DIM) / WORLD
            torch.testing.assert_close(grad_a, a.grad[rows], atol=1e-6, rtol=1e-4)
            torch.testing.assert_close(grad_b, b.grad[rows], atol=1e-6, rtol=1e-4)  # MoCo's keys too
