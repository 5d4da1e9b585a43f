"""The probe recorder (with the real trainer and SimCLR), the animation and ``sslzoo plot animate``."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from training.animate import alignment, animate, fit_pca, load_probes, uniformity
from training.config import TrainConfig
from training.evaluate import alignment as torch_alignment
from training.evaluate import uniformity as torch_uniformity
from training.methods.simclr import SimCLR
from training.plot_cli import add_plot_command
from training.probe import ProbeRecorder, pick_probe, probe_path
from training.trainer import Trainer
from zoo.errors import DataError

N_PROBE = 8


def tiny_simclr() -> SimCLR:
    torch.manual_seed(0)
    encoder = zoo.build_encoder("vit_nano", in_chans=1, img_size=16)
    return SimCLR(encoder, hidden_dim=32, out_dim=16)


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 16, 16, 1), dtype=np.uint8)


def test_records_every_n_steps_with_the_same_views_each_time(tmp_path):
    method = tiny_simclr()
    recorder = ProbeRecorder(tmp_path, images(N_PROBE), every_n_steps=3, labels=[0, 1] * 4, class_names=["a", "b"])
    method.train()
    rng_before = torch.get_rng_state()
    written = [recorder(step, method) for step in range(8)]
    assert [p.name if p else None for p in written] == ["step_0000000.npz", None, None, "step_0000003.npz", None,
                                                         None, "step_0000006.npz", None]
    assert torch.equal(torch.get_rng_state(), rng_before)  # the trainer's random stream is untouched
    assert method.training and method.image_encoder.training  # eval mode only while embedding
    with np.load(probe_path(tmp_path, 3)) as data:
        v1, v2, labels, step = data["view1"], data["view2"], data["labels"], int(data["step"])
    dim = method.image_encoder.embed_dim
    assert v1.shape == v2.shape == (N_PROBE, dim) and v1.dtype == np.float32 and step == 3
    assert labels.tolist() == [0, 1] * 4
    with np.load(probe_path(tmp_path, 0)) as first:
        np.testing.assert_array_equal(first["view1"], v1)  # same weights, same crops: the same points
        np.testing.assert_array_equal(first["view2"], v2)
    assert not np.allclose(v1, v2)  # but the two views of an image differ
    # the views are the method's own augmentation, and the vectors its encoder's output
    view1, _ = method.views(recorder.images, torch.Generator().manual_seed(0))
    with torch.inference_mode():
        method.image_encoder.eval()
        np.testing.assert_allclose(v1, method.image_encoder(view1).numpy(), atol=1e-5)
    assert (tmp_path / "probe" / "meta.json").is_file()


def test_the_trainer_calls_it_through_its_callbacks_and_the_points_move(tmp_path):
    method = tiny_simclr()
    recorder = ProbeRecorder(tmp_path / "run", images(N_PROBE, seed=1), every_n_steps=2)
    recorder.record(0, method)
    config = TrainConfig(steps=4, batch_size=8, lr=1e-3, log_every=2, checkpoint_every=0, progress=False,
                         precision="fp32", channels_last=False, device="cpu")
    Trainer(method, images(64, seed=2), config, tmp_path / "run", callbacks=[recorder.callback(method)]).fit()
    assert recorder.recorded == [0, 2, 4]
    frames = load_probes(tmp_path / "run")
    assert [f.step for f in frames] == [0, 2, 4]
    assert not np.allclose(frames[0].view1, frames[-1].view1)  # training changed the encoder


def test_rejects_bad_probe_sets(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        ProbeRecorder(tmp_path, images(4).astype(np.float32), 1)
    with pytest.raises(ValueError, match="at least two"):
        ProbeRecorder(tmp_path, images(1), 1)
    with pytest.raises(ValueError, match="every_n_steps"):
        ProbeRecorder(tmp_path, images(4), 0)
    with pytest.raises(ValueError, match="labels"):
        ProbeRecorder(tmp_path, images(4), 1, labels=[1, 2])
    with pytest.raises(ValueError, match="has no 'views'"):
        ProbeRecorder(tmp_path, images(4), 1).record(0, zoo.build_encoder("vit_nano", in_chans=1, img_size=16))


def test_pick_probe_balances_classes():
    labels = np.array([0] * 50 + [1] * 5 + [2] * 50)
    picked = pick_probe(labels, 9, seed=0)
    assert len(set(picked.tolist())) == 9
    assert np.bincount(labels[picked]).tolist() == [3, 3, 3]


def synthetic_run(run_dir, steps=(0, 10, 20, 30), n=12, dim=8, seed=0):
    """Probe files whose second views approach the first as the step grows (what training should do)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim))
    noise = rng.normal(size=(n, dim))
    folder = run_dir / "probe"
    folder.mkdir(parents=True)
    for i, step in enumerate(steps):
        shrink = 1.0 - i / len(steps)
        np.savez(folder / f"step_{step:07d}.npz", view1=base.astype(np.float32),
                 view2=(base + 2.0 * shrink * noise).astype(np.float32), labels=np.arange(n) % 3, step=np.int64(step))


def test_figures_match_wang_and_isola_reference():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(20, 6)), rng.normal(size=(20, 6))
    assert math.isclose(alignment(a, b), torch_alignment(torch.tensor(a), torch.tensor(b)), rel_tol=1e-5)
    assert math.isclose(uniformity(a), torch_uniformity(torch.tensor(a)), rel_tol=1e-5)
    assert uniformity(np.ones((5, 6))) == pytest.approx(0.0, abs=1e-9)  # collapse: every pair at distance 0


def test_animation_is_a_gif_with_a_frame_per_step_and_falling_alignment(tmp_path):
    synthetic_run(tmp_path)
    summary = animate(tmp_path, tmp_path / "anim.gif", hold_last=2, dpi=40)
    assert summary.steps == (0, 10, 20, 30) and summary.frames == 6
    assert all(x > y for x, y in zip(summary.alignment, summary.alignment[1:], strict=False))
    with Image.open(tmp_path / "anim.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames >= 4  # Pillow may merge the identical held frames
        first = np.asarray(gif.convert("RGB"))
        gif.seek(gif.n_frames - 1)
        assert not np.array_equal(first, np.asarray(gif.convert("RGB")))  # the picture moves


def test_pca_is_fitted_on_every_step(tmp_path):
    synthetic_run(tmp_path)
    frames = load_probes(tmp_path)
    mean, components = fit_pca(frames)
    stacked = np.concatenate([np.concatenate([f.view1, f.view2]) for f in frames])
    np.testing.assert_allclose(mean, stacked.mean(0), atol=1e-12)
    np.testing.assert_allclose(np.abs(components @ components.T), np.eye(2), atol=1e-9)


def test_plot_animate_command(tmp_path, capsys):
    synthetic_run(tmp_path / "run")
    parser = argparse.ArgumentParser(prog="sslzoo")
    add_plot_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plot", "animate", str(tmp_path / "run"), "--out", str(tmp_path / "a.gif"), "--dpi", "40"])
    assert args.func(args) == 0
    assert (tmp_path / "a.gif").stat().st_size > 0
    assert "4 recorded steps (0–30)" in capsys.readouterr().out
    with pytest.raises(DataError, match="no step_"):
        animate(tmp_path / "empty", tmp_path / "b.gif")
    with pytest.raises(DataError, match="unknown animation format"):
        animate(tmp_path / "run", tmp_path / "b.avi")
