"""The planted-bug catalogue of ``make mutants`` stays current, and its runner really catches a bug."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _mutants():
    spec = importlib.util.spec_from_file_location("mutants", REPO / "scripts" / "mutants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutants"] = module
    spec.loader.exec_module(module)
    return module


MUTANTS = _mutants()


@pytest.mark.parametrize("mutant", MUTANTS.MUTANTS, ids=lambda m: m.name)
def test_each_mutant_still_applies_and_names_existing_tests(mutant):
    text = (REPO / mutant.path).read_text()
    assert text.count(mutant.original) == 1, f"{mutant.path} no longer holds the line {mutant.name} plants a bug in"
    assert mutant.planted != mutant.original
    for spec in mutant.tests:
        path = MUTANTS.pytest_args(spec)[0].split("::")[0]
        assert (REPO / path).is_file(), spec
        if "::" in spec:
            assert f"def {spec.split('::')[1].split('[')[0]}(" in (REPO / path).read_text(), spec


@pytest.mark.slow
def test_a_planted_bug_is_caught_and_the_tree_is_untouched():
    mutant = next(m for m in MUTANTS.MUTANTS if m.name == "hue-no-op")
    before = (REPO / mutant.path).read_text()
    killed, _seconds, last = MUTANTS.run_mutant(mutant, keep=False)
    assert killed, last
    assert (REPO / mutant.path).read_text() == before
