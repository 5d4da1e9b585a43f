"""The README's model-zoo table is the generated one, and the table machinery behaves."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.cli import main
from zoo.config import EncoderConfig
from zoo.errors import ConfigError
from zoo.table import BEGIN, END, builtin_entries, key_figures, percent, replace_between_markers, table_in, zoo_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_the_generated_one():
    if not builtin_entries():
        # Still checked: while zoo/builtin is empty both sides are the "run make zoo" note.
        assert table_in(README.read_text()) == zoo_table(), "run `sslzoo zoo-table --write README.md`"
        pytest.skip("zoo/builtin is empty: no model has been shipped yet (run `make zoo`)")
    assert table_in(README.read_text()) == zoo_table(), "run `sslzoo zoo-table --write README.md`"


def test_markers_are_replaced_and_required(tmp_path):
    text = f"a\n{BEGIN}\nold\n{END}\nb\n"
    new = replace_between_markers(text, "| t |")
    assert new == f"a\n{BEGIN}\n| t |\n{END}\nb\n" and table_in(new) == "| t |"
    with pytest.raises(ConfigError, match="markers"):
        replace_between_markers("no markers", "x")


def test_key_figures_read_recorded_metrics_only():
    config = EncoderConfig(arch="resnet18", metrics={
        "knn_top1": {"value": 0.8612}, "linear_top1": 0.9, "zeroshot_shape_top1": {"value": 0.5}, "other": 1.0})
    assert key_figures(config) == {"knn": 0.8612, "linear": 0.9, "zero_shot": 0.5}
    assert key_figures(EncoderConfig(arch="resnet18")) == {"knn": None, "linear": None, "zero_shot": None}
    assert percent(0.8612) == "86.1" and percent(None) == "—"


def test_zoo_table_command_writes_a_readme(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{BEGIN}\n{END}\n")
    assert main(["zoo-table", "--root", str(tmp_path / "empty"), "--write", str(readme)]) == 0
    assert table_in(readme.read_text()) == zoo_table(tmp_path / "empty") in capsys.readouterr().out
