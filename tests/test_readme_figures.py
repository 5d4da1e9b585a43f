"""Every table of measured figures in the README names the command that printed it and the commit it ran at.

A figure that cannot be traced to a command and a tree is a figure nobody can rerun. Measured tables are
those in the Benchmarks section and any whose introduction quotes a ``python -m benchmarks.`` command; the
zoo table is generated from the entries themselves (tests/zoo/test_zoo_table.py checks it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
COMMAND = re.compile(r"`python -m (benchmarks\.\w+)[^`]*`")
COMMIT = re.compile(r"commit `([0-9a-f]{7,40})`")
GENERATED = re.compile(r"<!-- zoo-table:begin -->.*?<!-- zoo-table:end -->", re.S)


@dataclass
class Table:
    """A markdown table, or a fenced block that holds one, with the text that introduces it."""

    line: int
    section: str
    intro: str


def measured_tables(text: str) -> list[Table]:
    lines = GENERATED.sub(lambda m: "\n" * m.group(0).count("\n"), text).splitlines()
    tables: list[Table] = []
    section, intro, fenced, fence_has_table, fence_start = "", [], False, False, 0
    in_table = False
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            if fenced and fence_has_table:
                tables.append(Table(fence_start, section, "\n".join(intro)))
                intro = []
            fenced, fence_has_table, fence_start = not fenced, False, number
            continue
        if fenced:
            fence_has_table = fence_has_table or line.startswith("|")
            continue
        if line.startswith("## "):
            section, intro = line[3:].strip(), []
        elif line.startswith("#"):
            intro = []
        elif line.startswith("|"):
            if not in_table:
                tables.append(Table(number, section, "\n".join(intro)))
                intro = []
            in_table = True
            continue
        else:
            intro.append(line)
        in_table = False
    return [t for t in tables if t.section == "Benchmarks" or COMMAND.search(t.intro)]


def test_the_parser_finds_the_benchmark_tables():
    tables = measured_tables(README.read_text())
    assert len(tables) >= 4 and all(t.intro.strip() for t in tables)


@pytest.mark.parametrize("table", measured_tables(README.read_text()), ids=lambda t: f"line{t.line}")
def test_each_measured_table_names_its_command_and_commit(table: Table):
    command = COMMAND.search(table.intro)
    assert command, f"README line {table.line}: no `python -m benchmarks.…` command introduces this table"
    module = REPO / (command.group(1).replace(".", "/") + ".py")
    assert module.is_file(), f"README line {table.line}: {command.group(1)} does not exist"
    commit = COMMIT.search(table.intro)
    assert commit, f"README line {table.line}: the introduction does not name the commit (commit `abc1234`)"
    assert "as printed" in table.intro or "excerpt" in table.intro, (
        f"README line {table.line}: say whether the block is the output as printed or an excerpt")
    if full_history():
        known = subprocess.run(["git", "cat-file", "-e", f"{commit.group(1)}^{{commit}}"], cwd=REPO, check=False,
                               capture_output=True)
        assert known.returncode == 0, f"README line {table.line}: commit {commit.group(1)} is not in this history"


def full_history() -> bool:
    """Whether this checkout has git and its whole history (a shallow CI clone cannot look old commits up)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return False
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=REPO, check=False,
                             capture_output=True, text=True)
    return shallow.returncode == 0 and shallow.stdout.strip() == "false"
