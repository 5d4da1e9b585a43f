"""Shared fixtures: every test gets its own empty registry (the shipped models hidden)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Set by .ci/run: CI installs every optional package and Debian data set, so a skip there is a failure.
NO_SKIPS = "SSLZOO_NO_SKIPS"


@pytest.fixture(autouse=True)
def sslzoo_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``$SSLZOO_HOME`` at a fresh folder, sharing the dataset cache across tests (it is read-only data)."""
    home = tmp_path_factory.mktemp("sslzoo_home")
    data_cache = tmp_path_factory.getbasetemp() / "shared_data_cache"
    data_cache.mkdir(exist_ok=True)
    (home / "data").symlink_to(data_cache, target_is_directory=True)
    monkeypatch.setenv("SSLZOO_HOME", str(home))
    # The shipped models stay out of tests' registries (tests/release/test_shipped.py reads them explicitly).
    monkeypatch.setenv("SSLZOO_BUILTIN", "0")
    return home


def _skipped(config: pytest.Config) -> list[pytest.TestReport]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return list(reporter.stats.get("skipped", [])) if reporter is not None else []


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under ``$SSLZOO_NO_SKIPS=1`` a skipped test fails the run (the terminal summary says which)."""
    if os.environ.get(NO_SKIPS) == "1" and _skipped(session.config) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = _skipped(config)
    if os.environ.get(NO_SKIPS) == "1" and skipped:
        terminalreporter.write_line(f"FAILED: {len(skipped)} test(s) skipped, and {NO_SKIPS}=1 says every test must "
                                    "run here (see the skip reasons above)", red=True, bold=True)
