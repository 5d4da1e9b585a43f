"""Shared fixtures: every test gets its own empty registry (the shipped models hidden)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def sslzoo_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``$SSLZOO_HOME`` at a fresh folder, sharing the dataset cache across tests (it is read-only data)."""
    home = tmp_path_factory.mktemp("sslzoo_home")
    data_cache = tmp_path_factory.getbasetemp() / "shared_data_cache"
    data_cache.mkdir(exist_ok=True)
    (home / "data").symlink_to(data_cache, target_is_directory=True)
    monkeypatch.setenv("SSLZOO_HOME", str(home))
    # The shipped models stay out of tests' registries (tests/zoo/test_shipped.py reads them explicitly).
    monkeypatch.setenv("SSLZOO_BUILTIN", "0")
    return home
