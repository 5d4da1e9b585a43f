"""The trainer and its helpers: schedules, loader, optimiser/RNG checkpoints, exact resume, diagnostics."""

from __future__ import annotations

import json
import logging
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from tiny_method import SMALL_METHOD_ARGS, build_tiny, tiny_images, tiny_model

from training.checkpoint import optimizer_from_files, optimizer_to_files, rng_state, set_rng_state
from training.config import Recipe, TrainConfig, from_mapping
from training.data import BatchLoader
from training.diagnostics import CollapseMonitor, effective_rank, normalized_std
from training.methods.base import Method
from training.optim import LARS
from training.run import train_method
from training.schedules import CosineSchedule
from training.trainer import Trainer, TrainingError
from zoo.errors import ConfigError, DataError

SCRIPT = Path(__file__).parent / "tiny_method.py"


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def config(**changes) -> TrainConfig:
    base = dict(steps=4, batch_size=8, lr=3e-3, warmup_steps=1, log_every=1, checkpoint_every=0, progress=False)
    return TrainConfig(**{**base, **changes})


# -- schedules and data order ------------------------------------------------------------------------
def test_cosine_schedule_warmup_and_decay_points():
    s = CosineSchedule(base=1.0, end=0.1, total_steps=11, warmup_steps=2, start=0.0)
    assert [s(0), s(1)] == [0.0, 0.5]
    assert s(2) == pytest.approx(1.0)
    assert s(10) == pytest.approx(0.1)
    assert s(6) == pytest.approx(0.55)  # half way through the decay: the mean of base and end
    assert s(4) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 2 / 8)))


def test_cosine_schedule_rejects_bad_lengths():
    with pytest.raises(ConfigError):
        CosineSchedule(1.0, 0.0, total_steps=0)
    with pytest.raises(ConfigError):
        CosineSchedule(1.0, 0.0, total_steps=5, warmup_steps=6)


def test_loader_covers_each_epoch_once_and_shards_ranks():
    images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1).repeat(2, axis=1)
    ranks = [BatchLoader(images, 3, seed=5, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == 3  # 20 // (3 × 2): the last incomplete global batch is dropped
    epoch0 = [_take(loader.batches(), 3) for loader in ranks]
    seen = []
    for b0, b1 in zip(*epoch0, strict=True):
        assert set(b0["index"].tolist()).isdisjoint(b1["index"].tolist())
        assert torch.equal(b0["images"][:, 0, 0, 0].long(), b0["index"])
        seen += b0["index"].tolist() + b1["index"].tolist()
    assert len(set(seen)) == 18
    epoch1 = _take(ranks[0].batches(start=3), 3)
    assert any(not torch.equal(a["index"], b["index"]) for a, b in zip(epoch0[0], epoch1, strict=True))


def test_loader_resumes_mid_epoch_and_depends_on_seed():
    images = np.zeros((30, 2, 2, 1), dtype=np.uint8)
    loader = BatchLoader(images, 4, seed=1)
    straight = [b["index"] for b in _take(loader.batches(), 12)]
    resumed = [b["index"] for b in _take(loader.batches(start=5), 7)]
    assert all(torch.equal(a, b) for a, b in zip(straight[5:], resumed, strict=True))
    other = [b["index"] for b in _take(BatchLoader(images, 4, seed=2).batches(), 1)]
    assert not torch.equal(other[0], straight[0])


def test_loader_refuses_fewer_images_than_a_batch():
    with pytest.raises(DataError, match="fewer than one global batch"):
        BatchLoader(np.zeros((3, 2, 2, 1), dtype=np.uint8), 4)


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


# -- checkpoint pieces -------------------------------------------------------------------------------
def test_optimizer_state_round_trips_through_safetensors_and_json():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(2):
        model(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
    tensors, structure = optimizer_to_files(opt)
    structure = json.loads(json.dumps(structure))
    twin = nn.Linear(4, 3)
    twin.load_state_dict(model.state_dict())
    twin_opt = torch.optim.AdamW(twin.parameters(), lr=0.1)
    twin_opt.load_state_dict(optimizer_from_files(tensors, structure))
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (twin, twin_opt)):
        o.zero_grad()
        m(x).pow(2).sum().backward()
        o.step()
    assert torch.equal(model.weight, twin.weight) and torch.equal(model.bias, twin.bias)


def test_rng_state_round_trip():
    tensors, meta = rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(tensors, json.loads(json.dumps(meta)))
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


def test_lars_matches_a_hand_computed_step():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = LARS([{"params": [w], "weight_decay": 0.1, "wd_scale": 1.0}], lr=0.5, trust_coefficient=0.01)
    w.grad = torch.tensor([0.6, 0.8])
    opt.step()
    g = torch.tensor([0.6, 0.8]) + 0.1 * torch.tensor([3.0, 4.0])
    expected = torch.tensor([3.0, 4.0]) - 0.5 * (0.01 * 5.0 / g.norm()) * g
    assert torch.allclose(w.detach(), expected)


# -- the trainer -------------------------------------------------------------------------------------
def test_training_logs_every_step_with_the_schedule_and_diagnostics(tmp_path):
    cfg = config(steps=5, checkpoint_every=2, weight_decay_end=0.2)
    trainer = Trainer(build_tiny(), tiny_images(), cfg, tmp_path / "run", name="tiny")
    before = [p.detach().clone() for p in trainer.method.parameters()]
    result = trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5] and result.steps == 5
    assert [r["lr"] for r in rows] == pytest.approx([trainer.lr_schedule(s) for s in range(5)])
    assert rows[-1]["wd"] == pytest.approx(0.2) and rows[0]["wd"] == pytest.approx(0.05)
    assert {"loss", "grad_norm", "teacher_agreement", "emb_std", "emb_rank", "img_s"} <= set(rows[0])
    assert not torch.equal(trainer.method.teacher_head.weight, trainer.method.head.weight)  # the EMA twin lags
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.method.parameters(), strict=True))
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*")) == ["step_0000004",
                                                                                          "step_0000005"]


def test_killed_run_resumes_to_the_same_loss_curve(tmp_path):
    """SIGKILL after step 3 (last checkpoint at 2); the resumed curve equals an uninterrupted one.

    Every run is its own process, as a real resume is.
    """
    run = [sys.executable, str(SCRIPT)]
    common = ["--steps", "5", "--accum", "2", "--checkpoint-every", "2"]
    subprocess.run([*run, str(tmp_path / "straight"), *common], check=True, timeout=120)
    killed = subprocess.run([*run, str(tmp_path / "killed"), *common, "--kill-at", "3"], check=False, timeout=120)
    assert killed.returncode == -9
    assert len(losses(tmp_path / "killed")) == 3
    subprocess.run([*run, str(tmp_path / "killed"), *common, "--resume"], check=True, timeout=120)
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "killed")
    assert len(straight) == 5
    assert resumed == straight
    session = json.loads((tmp_path / "killed" / "session_steps_rank0.json").read_text())
    assert session == [3, 4, 5], "the resumed process must continue from the checkpoint of step 2"
    assert_same_state(tmp_path / "straight", tmp_path / "killed", "step_0000005")


def test_gradient_accumulation_equals_one_large_batch(tmp_path):
    """Two micro-batches of 4 give the same update as one batch of 8 (a per-sample loss, fp32)."""
    images = tiny_images(n=16, size=4)
    params = []
    torch.manual_seed(0)
    initial = _Regression().linear.weight.detach().clone()
    for bs, accum in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        method = _Regression()
        cfg = config(steps=1, batch_size=bs, accum_steps=accum, precision="fp32", grad_clip=None, warmup_steps=0)
        Trainer(method, images, cfg, tmp_path / f"bs{bs}").fit()
        params.append(method.linear.weight.detach().clone())
    assert torch.allclose(params[0], params[1], atol=1e-6)
    assert not torch.allclose(params[0], initial, atol=1e-4)  # and that update really happened


class _Regression(Method):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 1)

    def training_step(self, batch):
        x = batch["images"].float().flatten(1) / 255
        return {"loss": (self.linear(x) - 1).pow(2).mean(), "embeddings": x}


def test_epochs_set_the_steps_and_a_time_budget_stops_early(tmp_path):
    trainer = Trainer(_Regression(), tiny_images(n=64, size=4), config(steps=None, epochs=2, accum_steps=2), tmp_path)
    assert trainer.total_steps == 8  # 64 images / (8 × 2 per step) × 2 epochs
    result = Trainer(_Regression(), tiny_images(n=64, size=4), config(steps=50, max_time_s=0.0), tmp_path / "t").fit()
    assert result.stopped_early and result.steps == 1 and result.total_steps == 50
    assert (tmp_path / "t" / "checkpoints" / "step_0000001").is_dir()  # the state where it stopped is kept


def test_batch_size_below_the_method_minimum_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="min_batch_size=4"):
        Trainer(build_tiny(), tiny_images(), config(batch_size=2), tmp_path)


def test_existing_run_needs_resume(tmp_path):
    Trainer(build_tiny(), tiny_images(), config(steps=1), tmp_path).fit()
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(build_tiny(), tiny_images(), config(steps=1), tmp_path).fit()


def test_non_finite_loss_stops_training(tmp_path):
    class Exploding(_Regression):
        def training_step(self, batch):
            out = super().training_step(batch)
            return {**out, "loss": out["loss"] * float("inf")}

    with pytest.raises(TrainingError, match="not finite"):
        Trainer(Exploding(), tiny_images(n=16, size=4), config(steps=2), tmp_path).fit()


def test_non_finite_gradients_skip_the_step(tmp_path, caplog):
    method = _Regression()
    method.linear.weight.register_hook(lambda grad: grad * float("nan"))  # finite loss, NaN gradient
    before = method.linear.weight.detach().clone()
    with caplog.at_level(logging.WARNING), pytest.raises(TrainingError, match="in a row"):
        Trainer(method, tiny_images(n=16, size=4), config(steps=6, precision="fp32"), tmp_path).fit()
    assert "optimiser step skipped" in caplog.text
    assert torch.equal(method.linear.weight.detach(), before)


# -- collapse diagnostics ----------------------------------------------------------------------------
def test_diagnostics_on_known_configurations():
    torch.manual_seed(0)
    spread = torch.randn(4096, 32)
    assert normalized_std(spread) == pytest.approx(1.0, abs=0.05)
    assert effective_rank(torch.diag(torch.tensor([2.0, 2.0, 2.0, 0.0]))) == pytest.approx(3.0, rel=1e-6)
    collapsed = torch.ones(64, 32) + 1e-4 * torch.randn(64, 32)
    assert normalized_std(collapsed) < 0.01
    assert effective_rank(collapsed) < 1.1


def test_collapse_monitor_warns_once_on_the_way_down(caplog):
    torch.manual_seed(0)
    monitor = CollapseMonitor(grace_steps=1)
    collapsed = torch.ones(32, 16) + 1e-4 * torch.randn(32, 16)
    with caplog.at_level(logging.WARNING, logger="training.diagnostics"):
        monitor.check(collapsed, step=1)  # still in the grace period
        assert caplog.text == ""
        monitor.check(torch.randn(32, 16), step=2)
        monitor.check(collapsed, step=3)
        monitor.check(collapsed, step=4)
    assert caplog.text.count("collapsing") == 1 and "step 3" in caplog.text


# -- exact resume with every registered method -------------------------------------------------------
class _Stop(Exception):
    pass


def _stop_at(k):
    def callback(step, row):
        if step == k:
            raise _Stop

    return callback


@pytest.mark.parametrize("method", [
    "simclr", "byol", "mae",
    *[pytest.param(m, marks=pytest.mark.slow) for m in ("mocov3", "simsiam", "ijepa")],
    pytest.param("dino", marks=pytest.mark.slow),
])
def test_registered_methods_resume_exactly(method, tmp_path):
    recipe = from_mapping(Recipe, {
        "method": method, "method_args": SMALL_METHOD_ARGS.get(method, {}), "data": {"name": "digits", "max_images": 48},
        "model": tiny_model(method),
        "train": {"steps": 3, "batch_size": 8, "log_every": 1, "checkpoint_every": 2, "progress": False,
                  "warmup_steps": 1}})
    train_method(recipe, tmp_path / "a")
    with pytest.raises(_Stop):
        train_method(recipe, tmp_path / "b", callbacks=[_stop_at(3)])
    session: list[int] = []
    train_method(recipe, tmp_path / "b", resume=True, callbacks=[lambda step, _row: session.append(step)])
    assert session == [3], "the resumed session must start after the checkpoint of step 2, not from scratch"
    assert losses(tmp_path / "b") == losses(tmp_path / "a")
    assert_same_state(tmp_path / "a", tmp_path / "b", "step_0000003")


def assert_same_state(a: Path, b: Path, checkpoint: str) -> None:
    """The two runs' checkpoints hold the same weights and optimiser state (moments and step counts)."""
    for name in ("model.safetensors", "optimizer.safetensors"):
        left, right = (load_file(run / "checkpoints" / checkpoint / name) for run in (a, b))
        assert left.keys() == right.keys() and left, name
        different = [k for k in left if not torch.equal(left[k], right[k])]
        assert not different, f"{name}: {different[:5]}"

