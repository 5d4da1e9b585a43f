"""``make zoo`` end to end on tiny stand-ins: train (recipe and builder command), export, ship, table, resume."""

from __future__ import annotations

import json

import pytest

from release import make_zoo
from release.zoo_table import BEGIN, END, builtin_entries, table_in, zoo_table

RECIPE = """\
method: simclr
method_args: {temperature: 0.2}
model: {arch: resnet_narrow, arch_args: {output_stride: 16}}
data: {name: digits, max_images: 128}
train: {steps: 2, batch_size: 32, seed: 0, log_every: 1, checkpoint_every: 0, progress: false}
eval: {enabled: false}
"""
BUILDER = """\
import sys
import zoo
from zoo.encoders import build_encoder

encoder = build_encoder("resnet_narrow", img_size=16, in_chans=1, method="simclr")
encoder.config = encoder.config.replace(data="digits")
zoo.save(encoder, sys.argv[1])
"""


@pytest.mark.slow
def test_make_zoo_trains_exports_ships_and_resumes(tmp_path, monkeypatch, capsys):
    (tmp_path / "tiny.yaml").write_text(RECIPE)
    (tmp_path / "build.py").write_text(BUILDER)
    (tmp_path / "zoo.yaml").write_text(
        f"models:\n  - name: tiny-simclr\n    recipe: {tmp_path / 'tiny.yaml'}\n"
        f"  - name: tiny-built\n    command: python {tmp_path / 'build.py'} {{source}}\n"
        f"    inputs: [{tmp_path / 'build.py'}]\n    label_efficiency: --tiny\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n\nrest\n")
    root, runs = tmp_path / "root", tmp_path / "runs"
    args = ["--config", str(tmp_path / "zoo.yaml"), "--root", str(root), "--runs", str(runs), "--readme", str(readme)]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    assert make_zoo.main([*args, "--jobs", "2"]) == 0  # both trained at once, shipped in order
    names = [e.name for e in builtin_entries(root)]
    assert names == ["tiny-built", "tiny-simclr"]
    for entry in builtin_entries(root):
        shipped = entry.read_config().shipped
        assert shipped["onnx_files"] == ["model.onnx"] and shipped["provenance"]["sha256"]
        assert shipped["provenance"]["train_threads"] == 1
    assert (runs / "tiny-simclr.log").read_text().count("$ ") == 2  # train, export
    trained = json.loads((runs / "train" / "tiny-simclr" / "result.json").read_text())["training"]["seconds"]
    simclr = next(e for e in builtin_entries(root) if e.name == "tiny-simclr")
    assert simclr.read_config().shipped["provenance"]["train_seconds"] == round(trained, 1), "the run's own time"
    built = next(e for e in builtin_entries(root) if e.name == "tiny-built")
    measured = built.read_config().shipped["label_efficiency"]
    assert {(r["encoder"], r["labels"]) for r in measured["rows"]} >= {("tiny-built", 20), ("", 40)}
    assert measured["command"].endswith("python -m benchmarks.label_efficiency --encoders tiny-built --tiny --threads 1")
    card = (built.path / "README.md").read_text()
    frozen = next(r for r in measured["rows"] if r["method"] == "(a) frozen + linear" and r["labels"] == 20)
    assert "## Label efficiency" in card and f"| (a) frozen + linear | 20 | {frozen['top1'] * 100:.2f} |" in card
    assert table_in(readme.read_text()) == zoo_table(root)
    assert readme.read_text().endswith(f"{END}\n\nrest\n")
    capsys.readouterr()

    before = {p: p.stat().st_mtime_ns for p in root.rglob("config.json")}
    assert make_zoo.main([*args, "--no-readme"]) == 0
    assert {p: p.stat().st_mtime_ns for p in root.rglob("config.json")} == before, "up-to-date models are skipped"

    rebuilt = []
    monkeypatch.setattr(make_zoo, "build_all", lambda models, *_: rebuilt.extend(m.name for m in models) or [])
    (tmp_path / "build.py").write_text(BUILDER + "# changed\n")
    assert make_zoo.main([*args, "--no-readme"]) == 0
    assert rebuilt == ["tiny-built"], "only the model whose builder changed is rebuilt"
    assert make_zoo.main([*args, "--no-readme", "--force", "--only", "tiny-simclr"]) == 0
    assert rebuilt == ["tiny-built", "tiny-simclr"]
    with pytest.raises(SystemExit, match="not in"):
        make_zoo.main([*args, "--only", "nope"])
    with pytest.raises(SystemExit, match="at least 1"):
        make_zoo.main([*args, "--jobs", "0"])


GATED_BUILDER = """\
import sys
import zoo
from zoo.encoders import build_encoder

encoder = build_encoder("resnet_narrow", img_size=16, in_chans=1, method="simclr")
knn = {"value": float(sys.argv[2]), "dataset": "digits", "split": "test"}
encoder.config = encoder.config.replace(data="digits", metrics={"knn_top1": knn})
zoo.save(encoder, sys.argv[1])
"""


def test_pixel_gate_refuses_what_does_not_beat_raw_pixels(tmp_path, monkeypatch):
    """``beat_pixels``: an entry below raw pixels' k-NN on its own split is not shipped; one above is."""
    (tmp_path / "build.py").write_text(GATED_BUILDER)
    command = f"python {tmp_path / 'build.py'} {{source}}"
    (tmp_path / "zoo.yaml").write_text(
        f"models:\n  - name: weak\n    command: {command} 0.5\n    beat_pixels: knn_top1\n"
        f"  - name: strong\n    command: {command} 0.9999\n    beat_pixels: knn_top1\n")
    root, runs = tmp_path / "root", tmp_path / "runs"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    args = ["--config", str(tmp_path / "zoo.yaml"), "--root", str(root), "--runs", str(runs), "--no-readme"]
    assert make_zoo.main(args) == 0
    assert [e.name for e in builtin_entries(root)] == ["strong"]
    bar = json.loads((runs / "pixel_baselines.json").read_text())["digits/test/knn_top1"]
    assert 0.5 < bar < 0.9999
    assert f"weak: NOT SHIPPED: knn_top1 0.5000 does not beat raw pixels' {bar:.4f}" in (runs / "weak.log").read_text()
