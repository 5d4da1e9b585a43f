"""``sslzoo train --probe-every N`` records the probe into the run folder; ``sslzoo plot animate`` draws it.

(The recorder and the animation themselves are tested in tests/page/test_probe_animate.py.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from tiny_method import SMALL_METHOD_ARGS, tiny_model

from training.config import Recipe, TrainConfig, from_mapping, load_recipe
from training.probe import META_FILE, PROBE_DIR, probe_path, recorded_steps
from zoo.cli import main
from zoo.errors import ConfigError

ZOO_SIMCLR = Path(__file__).resolve().parents[2] / "training" / "recipes" / "zoo" / "simclr.yaml"


def _recipe(tmp_path: Path, method: str = "simclr", **train: object) -> Path:
    raw = {"method": method, "method_args": SMALL_METHOD_ARGS.get(method, {}), "model": tiny_model(method),
           "data": {"name": "digits", "max_images": 200},
           "train": {"steps": 5, "batch_size": 16, "log_every": 1, "checkpoint_every": 0, "progress": False,
                     "warmup_steps": 1, **train}}
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _train(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["train", "--no-save", "--no-eval", "--no-progress", *argv])
    return code, capsys.readouterr().err


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_records_the_probe_and_plot_animate_draws_it(tmp_path, capsys):
    run = tmp_path / "run"
    code, err = _train(capsys, "--recipe", str(_recipe(tmp_path)), "--out", str(run), "--probe-every", "2",
                       "--set", "train.probe_size=12")
    assert code == 0, err
    assert recorded_steps(run) == [0, 2, 4, 5]  # step 0, every 2, and the last step
    assert yaml.safe_load((run / "recipe.yaml").read_text())["train"]["probe_every"] == 2
    with np.load(probe_path(run, 4)) as data:
        view1, view2, labels = data["view1"], data["view2"], data["labels"]
    assert view1.shape == view2.shape and view1.shape[0] == 12 and view1.dtype == np.float32
    assert not np.allclose(view1, view2)  # two different views of each image
    assert len(set(labels.tolist())) == 10  # balanced over the digits' test classes: every class shows
    meta = json.loads((run / PROBE_DIR / META_FILE).read_text())
    assert meta["num_images"] == 12 and meta["every_n_steps"] == 2 and len(meta["class_names"]) == 10
    with np.load(probe_path(run, 0)) as first:
        assert not np.allclose(first["view1"], view1)  # training moved the points

    assert main(["plot", "animate", str(run), "--dpi", "40"]) == 0
    assert "4 recorded steps (0–5)" in capsys.readouterr().out
    with Image.open(run / "contrastive.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames >= 4


def test_recording_leaves_the_training_unchanged(tmp_path, capsys):
    recipe = str(_recipe(tmp_path, steps=3))
    assert _train(capsys, "--recipe", recipe, "--out", str(tmp_path / "plain"))[0] == 0
    assert _train(capsys, "--recipe", recipe, "--out", str(tmp_path / "probed"), "--probe-every", "1")[0] == 0
    assert recorded_steps(tmp_path / "probed") == [0, 1, 2, 3]
    assert not (tmp_path / "plain" / PROBE_DIR).exists()  # off by default
    assert _losses(tmp_path / "probed") == _losses(tmp_path / "plain")  # its own RNG, eval mode, no grads


def test_bad_probe_settings_are_refused_with_the_field_named(tmp_path, capsys):
    code, err = _train(capsys, "--recipe", str(_recipe(tmp_path)), "--out", str(tmp_path / "run"),
                       "--probe-every", "-5")
    assert code == 2 and "train.probe_every must be 0 (off) or a number of steps, got -5" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"train\.probe_size must be at least 2"):
        TrainConfig(probe_size=1)
    with pytest.raises(ConfigError, match="probe_every"):
        load_recipe(_recipe(tmp_path, probe_every=-1))
    with pytest.raises(ConfigError, match=r"unknown keys \['probe_evry'\]"):
        from_mapping(Recipe, {"train": {"probe_evry": 10}})


def test_a_method_without_two_views_is_named_before_the_run_folder_is_written(tmp_path, capsys):
    code, err = _train(capsys, "--recipe", str(_recipe(tmp_path, "mae")), "--out", str(tmp_path / "run"),
                       "--probe-every", "2")
    assert code == 2 and "method 'mae' makes 1 view per image" in err and "train.probe_every" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing written: the same command without the flag just works


def test_the_shipped_simclr_recipe_records_a_probe():
    recipe = load_recipe(ZOO_SIMCLR)
    assert recipe.method == "simclr" and recipe.train.probe_every > 0
