"""Two real Hub servers on loopback for the hub tests, started once per session.

* ``hub_server``: ``hubserver.py`` (this folder) — takes pushes (create-repo, preupload, commit, branch,
  tag), serves downloads, and injects faults on request;
* ``olah_server``: the ``olah`` mirror (PyPI), offline, serving the very git repositories ``hub_server``
  writes as its local mirrors — so a push to one server is pulled through an independent implementation.

Every test gets an empty huggingface_hub cache (``constants.HF_HUB_CACHE``, read at each call) and its own
repo names, so the session-wide servers never leak state between tests.
"""

from __future__ import annotations

import itertools
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import disable_progress_bars

HERE = Path(__file__).resolve().parent
TOKEN = "hf_test_write_token"
_names = itertools.count()


@dataclass
class Server:
    """A running server: its URL, and for the test hub its repo root and token."""

    url: str
    root: Path
    token: str
    process: subprocess.Popen[str]

    def faults(self, plan: dict[str, list[str]]) -> None:
        """Queue faults for the next GETs of files (``drop``, ``corrupt``, ``error``); ``{}`` clears them."""
        httpx.post(f"{self.url}/_test/faults", json=plan, timeout=10).raise_for_status()

    def pending_faults(self) -> dict[str, list[str]]:
        """Faults queued but not yet served: ``{}`` once every one has hit a download."""
        response = httpx.get(f"{self.url}/_test/faults", timeout=10)
        response.raise_for_status()
        return dict(response.json())


def _wait_until_up(url: str, process: subprocess.Popen[str], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            httpx.get(f"{url}/api/models/nobody/nothing/refs", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout} s")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("hub-repos")
    log = open(root.parent / "hubserver.log", "w")  # noqa: SIM115 - open for the session
    process = subprocess.Popen([sys.executable, str(HERE / "hubserver.py"), "--root", str(root), "--token", TOKEN],
                               stdout=subprocess.PIPE, stderr=log, text=True)
    ready, _, _ = select.select([process.stdout], [], [], 60)
    line = process.stdout.readline() if ready and process.stdout else ""
    if not line.startswith("PORT "):
        _stop(process)
        raise RuntimeError(f"hubserver.py did not report its port (got {line!r}); see {log.name}")
    url = f"http://127.0.0.1:{int(line.split()[1])}"
    _wait_until_up(url, process, "hubserver.py")
    yield Server(url, root, TOKEN, process)
    _stop(process)
    log.close()


@pytest.fixture(scope="session")
def olah_server(hub_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("olah")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = work / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{work / "cache"}"\n'
        f'mirrors-path = ["{hub_server.root}"]\n[accessibility]\noffline = true\n'
    )
    log = open(work / "olah.log", "w")  # noqa: SIM115 - open for the session
    process = subprocess.Popen([sys.executable, "-m", "olah.server", "-c", str(config), "--log-path", str(work)],
                               cwd=work, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    _wait_until_up(url, process, "olah")
    yield Server(url, hub_server.root, TOKEN, process)
    _stop(process)
    log.close()


@pytest.fixture(autouse=True)
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh huggingface_hub cache per test; no endpoint or token leaks in from the environment."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("SSLZOO_HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    disable_progress_bars()
    return cache


@pytest.fixture
def repo_id(request: pytest.FixtureRequest) -> str:
    """A repo name no other test uses."""
    return f"acme/{request.node.name.split('[')[0].removeprefix('test_')[:40]}-{next(_names)}"


@pytest.fixture(autouse=True)
def no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "hub_server" in request.fixturenames:
        request.getfixturevalue("hub_server").faults({})

