"""``sslzoo ship`` and ``sslzoo zoo-table`` reach the ``sslzoo`` command through the declared entry points.

The entry points are read from ``pyproject.toml`` rather than the installed metadata, so the test checks
what the next install will register, through the real ``sslzoo`` parser and error handling.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from release.zoo_table import BEGIN, END, table_in, zoo_table
from zoo import cli

REPO = Path(__file__).resolve().parents[2]
DECLARED = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["sslzoo.commands"]


@pytest.fixture
def declared_commands(monkeypatch):
    """``sslzoo`` with exactly the subcommands pyproject declares."""
    points = [EntryPoint(name, value, "sslzoo.commands") for name, value in DECLARED.items()]
    monkeypatch.setattr(cli, "entry_points", lambda group: points if group == "sslzoo.commands" else [])


def test_release_commands_are_declared_and_listed(declared_commands, capsys):
    assert DECLARED["ship"].startswith("release.") and DECLARED["zoo-table"].startswith("release.")
    cli.build_parser().print_help()
    out = capsys.readouterr().out
    assert "ship" in out and "zoo-table" in out


def test_zoo_table_command_writes_a_readme(declared_commands, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"x\n{BEGIN}\n{END}\n")
    assert cli.main(["zoo-table", "--root", str(tmp_path / "empty"), "--write", str(readme)]) == 0
    assert table_in(readme.read_text()) == zoo_table(tmp_path / "empty") in capsys.readouterr().out


def test_ship_of_an_unknown_entry_is_one_line_and_exit_2(declared_commands, tmp_path, capsys):
    assert cli.main(["ship", "nothing-here", "--name", "x", "--root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sslzoo ship: error: no model named 'nothing-here'") and "Traceback" not in err
    assert cli.main(["ship", "nothing-here", "--name", "not a name", "--root", str(tmp_path / "root")]) == 2
    assert "not a valid model name" in capsys.readouterr().err


def test_building_the_commands_imports_neither_torch_nor_onnxruntime():
    code = ("import argparse, sys, release.cli as c; sub = argparse.ArgumentParser().add_subparsers(); "
            "c.add_ship_command(sub); c.add_zoo_table_command(sub); "
            "print('torch' in sys.modules, 'onnxruntime' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_make_zoo_runs_as_a_module():
    done = subprocess.run([sys.executable, "-m", "release.make_zoo", "--help"], cwd=REPO, capture_output=True,
                          text=True, check=True)
    assert done.stdout.startswith("usage: python -m release.make_zoo") and "--budget-mb" in done.stdout
