"""Helpers for the service tests: a real ``bentoml serve`` subprocess, HTTP calls, test images."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
BENTOML = Path(sys.executable).with_name("bentoml")
START_TIMEOUT = 180.0  # a guard against hanging, not a performance assertion (2 shared cores)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``bentoml serve service:SslzooService`` on a free loopback port, in its own process group."""

    def __init__(self, home: Path, data_dir: Path, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SSLZOO_")}
        environ.update({"SSLZOO_HOME": str(home), "SSLZOO_DATA_DIR": str(data_dir), "BENTOML_DO_NOT_TRACK": "True",
                        "BENTOML_HOME": str(home / "bentoml"), "SSLZOO_BUILTIN": "0",
                        # One embedding worker unless a test asks for more: each loads the models.
                        "SSLZOO_EMBED_WORKERS": "1", **env})
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(BENTOML), "serve", "service:SslzooService", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO, env=environ, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, ready: bool = True) -> Server:
        """Wait for /readyz (or only /healthz when ``ready`` is false); fail with the log on timeout."""
        path = "/readyz" if ready else "/healthz"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if requests.get(self.url + path, timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not {'ready' if ready else 'up'} after {START_TIMEOUT} s:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Graceful stop: SIGTERM to the arbiter, which stops its workers (their shutdown hook snapshots)."""
        workers = descendants(self.proc.pid)
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        for pid in workers:  # never leave a worker behind to hold the data directory
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.log.close()

    def kill(self) -> None:
        """``kill -9`` every process of the server (the arbiter and its workers, which BentoML puts in
        process groups of their own): no shutdown hook, no flush."""
        victims = descendants(self.proc.pid)
        self._signal(signal.SIGKILL)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()
        for pid in victims:
            deadline = time.monotonic() + 30
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(pid), f"server process {pid} survived SIGKILL"

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)  # the group this test created (start_new_session)

    # -- HTTP --------------------------------------------------------------------------------------
    def post(self, path: str, body: Any = None, key: str | None = None, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if body is not None:
            kwargs["json"] = body
        return requests.post(self.url + path, headers=headers, timeout=120, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=60, **kwargs)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from ``/proc`` (children first found, then theirs)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, killed but not yet reaped by init, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# -- images ----------------------------------------------------------------------------------------
def png_bytes(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (32, 32), seed: int | None = None
              ) -> bytes:
    if seed is None:
        image = Image.new("RGB", size, color)
    else:
        pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_uri(seed: int, size: tuple[int, int] = (32, 32)) -> str:
    return data_uri(png_bytes(size=size, seed=seed))


def bomb_png(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of ``side × side`` black pixels: tens of kilobytes, built row by row."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# -- documentation examples ------------------------------------------------------------------------
BEGIN, END = "<!-- service-examples:begin", "<!-- service-examples:end -->"
_BLOCK = re.compile(r"^```(bash|python)[^\n]*\n(.*?)^```", re.S | re.M)


def extract_examples(path: Path) -> list[tuple[str, str]]:
    """``(language, code)`` of every bash and python block between the example markers of a Markdown file.

    The same extractor serves ``docs/service.md`` and the README once the examples are copied there
    with their markers.
    """
    text = path.read_text()
    examples = []
    while BEGIN in text:
        start = text.index(BEGIN)
        end = text.find(END, start)
        if end < 0:
            raise AssertionError(f"{path}: {BEGIN} without {END}")
        examples += [(m.group(1), m.group(2)) for m in _BLOCK.finditer(text[start:end])]
        text = text[end + len(END):]
    return examples
