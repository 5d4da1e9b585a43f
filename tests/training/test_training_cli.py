"""``sslzoo train`` / ``sslzoo eval``, the shipped recipes, and clear errors on bad input.

(Named test_training_cli.py: tests/zoo/test_cli.py already holds the basename test_cli.py, and the test
folders have no __init__.py, so pytest cannot import two modules of one name.)
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from tiny_method import SMALL_METHOD_ARGS, tiny_model

import zoo
from training.config import Recipe, apply_overrides, from_mapping, load_recipe
from training.methods import METHODS
from training.run import build_method, build_run_encoder
from zoo.cli import main
from zoo.data import ImageDataset
from zoo.errors import ConfigError

RECIPES = sorted(p for p in (Path(__file__).resolve().parents[2] / "training" / "recipes").glob("*.yaml")
                 if p.stem != "zoo")  # zoo.yaml lists the shipped models, it is not a recipe
SIZES = {"fashion-mnist": 28, "digits": 16}


def _fake(name: str) -> ImageDataset:
    size = SIZES[name]
    return ImageDataset(name=name, split="train", images=np.zeros((4, size, size, 1), dtype=np.uint8), labels=None,
                        class_names=None, captions=None, license="test", source="test")


def test_there_is_a_recipe_per_method_and_dataset():
    names = {p.stem for p in RECIPES}
    for method in ("simclr", "mocov3", "byol", "simsiam", "dino", "mae", "ijepa"):
        assert {f"{method}_fashion-mnist", f"{method}_digits"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipes_load_and_build(path):
    recipe = load_recipe(path)
    assert recipe.method in METHODS.names() and recipe.data.name in SIZES
    method = build_method(recipe, build_run_encoder(recipe, _fake(recipe.data.name)))
    assert recipe.train.batch_size >= method.min_batch_size


def test_unknown_recipe_keys_are_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method: simclr\ntrain: {epochs: 1, learning_rate: 0.1}\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['learning_rate'\].*valid keys: steps"):
        load_recipe(path)
    recipe = from_mapping(Recipe, {"method": "simclr", "method_args": {"temprature": 0.1}})
    with pytest.raises(ConfigError, match=r"no argument.*temprature.*temperature"):
        build_method(recipe, build_run_encoder(recipe, _fake("digits")))


def test_overrides_are_typed():
    recipe = apply_overrides(Recipe(), {"train.lr": "3e-4", "eval.few_shot": [1, 5], "train.grad_clip": None})
    assert recipe.train.lr == 3e-4 and recipe.eval.few_shot == (1, 5) and recipe.train.grad_clip is None
    with pytest.raises(ConfigError, match="expected an integer"):
        apply_overrides(Recipe(), {"train.batch_size": 2.5})
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides(Recipe(), {"nothing.lr": 1})


def _tiny_recipe(tmp_path: Path, method: str = "simclr") -> Path:
    raw = {"method": method, "method_args": SMALL_METHOD_ARGS.get(method, {}), "model": tiny_model(method),
           "data": {"name": "digits"},
           "train": {"steps": 2, "batch_size": 16, "log_every": 1, "checkpoint_every": 1, "progress": False},
           "eval": {"max_train": 300, "max_test": 120, "few_shot": [1], "few_shot_draws": 1}}
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_train_saves_an_entry_with_metrics_figures_and_recipe_then_eval(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--recipe", str(_tiny_recipe(tmp_path)), "--out", str(run), "--name", "tiny-simclr"]) == 0
    out = capsys.readouterr().out
    assert "saved tiny-simclr@1" in out and "knn_top1" in out
    entry = zoo.list_models()[0]
    config = entry.read_config()
    assert config.method == "simclr" and config.data == "digits"
    assert config.metrics["knn_top1"]["dataset"] == "digits" and config.metrics["knn_top1"]["split"] == "test"
    assert {"linear_top1", "fewshot1_top1", "alignment", "uniformity", "effective_rank"} <= set(config.metrics)
    assert config.recipe["train"]["steps"] == 2
    card = (entry.path / "README.md").read_text()
    assert "(training_curves.png)" in card and "(embeddings_pca.png)" in card and "knn_top1" in card
    for png in ("training_curves.png", "embeddings_pca.png"):
        assert (entry.path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png in entry.manifest()["files"]
    assert zoo.load("tiny-simclr").embed_dim == config.embed_dim

    assert main(["eval", "tiny-simclr", "--data", "digits", "--max-train", "200", "--max-test", "100",
                 "--no-probe", "--few-shot", "--json", "--save"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(printed[: printed.rindex("}") + 1])
    assert set(metrics) == {"knn_top1", "alignment", "uniformity", "effective_rank"}
    saved = zoo.load("tiny-simclr@2")
    assert saved.config.metrics["knn_top1"]["value"] == metrics["knn_top1"]["value"]
    assert (saved.entry.path / "training_curves.png").is_file()


def test_resume_checks_the_recipe(tmp_path, capsys):
    run = tmp_path / "run"
    recipe = str(_tiny_recipe(tmp_path))
    assert main(["train", "--recipe", recipe, "--out", str(run), "--no-save", "--no-eval", "--steps", "1"]) == 0
    assert main(["train", "--out", str(run), "--no-save", "--no-eval"]) == 2  # exists: needs --resume
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(run), "--lr", "0.5"]) == 2
    assert "train.lr" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(run)]) == 0  # the saved recipe: nothing left to do


def _run_train(capsys, *argv: str) -> tuple[int, str]:
    code = main(["train", "--no-save", "--no-eval", "--no-progress", *argv])
    return code, capsys.readouterr().err


def test_empty_and_single_image_folders_are_clear_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = _run_train(capsys, "--data", f"folder:{empty}", "--out", str(tmp_path / "r1"))
    assert code == 2 and "empty" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    single = tmp_path / "single"
    single.mkdir()
    Image.new("RGB", (20, 20), "red").save(single / "a.png")
    code, err = _run_train(capsys, "--data", f"folder:{single}", "--out", str(tmp_path / "r2"))
    assert code == 2 and "only 1 usable image" in err


def test_unreadable_images_are_skipped_counted_and_reported(tmp_path, capsys, caplog):
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.png").write_bytes(b"not a png at all")
    with caplog.at_level(logging.WARNING):
        code, err = _run_train(capsys, "--recipe", str(_tiny_recipe(tmp_path)), "--data", f"folder:{folder}",
                               "--set", "data.options={image_size: 16}", "--batch-size", "4", "--steps", "1",
                               "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert "1 unreadable image file(s) skipped (e.g. broken.png); training on the 8 that decoded" in caplog.text


def test_batch_size_below_the_method_minimum_names_it(tmp_path, capsys):
    code, err = _run_train(capsys, "--recipe", str(_tiny_recipe(tmp_path)), "--batch-size", "1",
                           "--out", str(tmp_path / "run"))
    assert code == 2 and "min_batch_size=2" in err and "simclr" in err


def test_unknown_method_lists_the_methods(tmp_path, capsys):
    code, err = _run_train(capsys, "--method", "simclrr", "--data", "digits", "--out", str(tmp_path / "run"))
    assert code == 2 and "unknown method 'simclrr'" in err
    for method in ("byol", "dino", "mae", "simclr"):
        assert method in err


def test_resume_needs_a_run_folder(capsys):
    code, err = _run_train(capsys, "--resume")
    assert code == 2 and "--resume needs --out" in err


def test_train_help_lists_every_registered_method(capsys):
    from training.methods import METHODS
    from zoo.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"a registered method: {', '.join(METHODS.names())}" in text and "clip" in METHODS.names()
