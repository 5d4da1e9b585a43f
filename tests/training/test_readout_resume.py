"""``model.readout``: the saved encoder's pooling; it acts after training, so a finished run may resume with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import zoo
from zoo.cli import main


def _recipe(tmp_path: Path, **model: object) -> Path:
    raw = {"method": "simclr", "method_args": {"out_dim": 16},
           "model": {"arch": "resnet_narrow", "arch_args": {"output_stride": 8}, **model},
           "data": {"name": "digits", "max_images": 200},
           "train": {"steps": 4, "batch_size": 16, "log_every": 1, "checkpoint_every": 2, "progress": False,
                     "warmup_steps": 1},
           "eval": {"linear_probe": False, "few_shot": [], "alignment": False}}
    path = tmp_path / f"recipe-{len(list(tmp_path.glob('recipe-*')))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_finished_run_resumes_with_a_readout_and_saves_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSLZOO_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    assert main(["train", "--recipe", str(_recipe(tmp_path)), "--out", str(run), "--name", "avg"]) == 0
    losses = (run / "metrics.jsonl").read_text()

    code = main(["train", "--recipe", str(_recipe(tmp_path, readout="flatten")), "--out", str(run),
                 "--name", "flat", "--resume"])
    assert code == 0, capsys.readouterr().err
    assert (run / "metrics.jsonl").read_text() == losses  # no step trained again
    avg, flat = zoo.load("avg"), zoo.load("flat")
    assert avg.config.pooling == "avg" and flat.config.pooling == "flatten"
    assert flat.embed_dim == 4 * avg.embed_dim  # 128 channels x a 2x2 map at 16 px
    assert "knn_top1" in flat.config.metrics
    training = flat.config.extra["training"]
    assert training["steps"] == 4 and training["seconds"] > 0 and training["img_per_s"] > 0  # the whole run's
    first = avg.config.extra["training"]
    assert training["seconds"] == pytest.approx(first["seconds"], rel=0.5)  # the first session's, not ~0
    assert training["final_loss"] == first["final_loss"]
    assert yaml.safe_load((run / "recipe.yaml").read_text())["model"]["readout"] == "flatten"


def test_a_finished_run_resumes_with_an_earlier_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSLZOO_HOME", str(tmp_path / "home"))
    run = tmp_path / "run"
    assert main(["train", "--recipe", str(_recipe(tmp_path)), "--out", str(run), "--no-save"]) == 0
    code = main(["train", "--recipe", str(_recipe(tmp_path, readout="flatten", readout_stages=1)), "--out", str(run),
                 "--name", "stage1", "--resume"])
    assert code == 0, capsys.readouterr().err
    cut = zoo.load("stage1")
    assert cut.config.stages == 1 and cut.config.pooling == "flatten"
    assert cut.embed_dim == 16 * 4 * 4  # layer1 of resnet_narrow: 16 channels, a 4x4 map at 16 px
    assert "knn_top1" in cut.config.metrics


def test_resume_still_refuses_a_change_that_acts_during_training(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--recipe", str(_recipe(tmp_path)), "--out", str(run), "--no-save", "--no-eval"]) == 0
    changed = _recipe(tmp_path, readout="flatten", pooling="flatten")
    assert main(["train", "--recipe", str(changed), "--out", str(run), "--no-save", "--no-eval", "--resume"]) != 0
    assert "model.pooling" in capsys.readouterr().err
