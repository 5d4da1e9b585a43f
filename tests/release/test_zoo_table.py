"""The README's model-zoo table is the generated one, and the table machinery behaves."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from release.zoo_table import BEGIN, END, _machines, builtin_entries, replace_between_markers, table_in, zoo_table
from zoo.errors import ConfigError

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


def test_the_footnote_says_which_rows_each_cpu_measured():
    entries = [SimpleNamespace(name=n) for n in ("default", "dino", "simclr", "old")]
    speeds = [{"cpu": "Intel Xeon"}, {"cpu": "AMD EPYC"}, {"cpu": "Intel Xeon"}, {}]
    assert _machines(entries, speeds) == ("AMD EPYC (`dino`) and Intel Xeon (`default`, `simclr`) "
                                          "and an unrecorded CPU (`old`)")
    assert _machines(entries[:1], speeds[:1]) == "Intel Xeon"
