"""HTTP/1.1 over a bare socket, for requests no HTTP client library will send.

Broken framing (a body shorter than its ``Content-Length``, a chunked body without its last chunk, a
multipart type without a boundary) is exactly what the service must survive, and ``requests`` or
``httpx`` correct or refuse most of it before it leaves the client.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

#: A client-side guard against hanging, far above any answer the server should take; not a timing claim.
CLIENT_TIMEOUT = 10.0


@dataclass
class RawResponse:
    """One answer read off the socket; ``status`` 0 when none came before ``CLIENT_TIMEOUT``."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    closed: bool  # the server closed the connection after answering

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"",
                timeout: float = CLIENT_TIMEOUT, close_wait: float = 2.0) -> RawResponse:
    """Send ``headers`` exactly as given (no ``Content-Length`` added) and read one response.

    ``closed`` tells whether the server closed the connection within ``close_wait`` seconds of
    answering (a kept-alive connection reads as open).
    """
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before the body is sent
            sock.sendall(head.encode("latin-1") + body)
        data, answered_at = _read_response(sock, start + timeout)
        seconds = (answered_at or time.monotonic()) - start
        if answered_at is None:
            return RawResponse(0, {}, data, seconds, closed=False)
        closed = _closed(sock, time.monotonic() + close_wait)
    status, headers_out, payload = _parse(data)
    return RawResponse(status, headers_out, payload, seconds, closed)


def _read_response(sock: socket.socket, deadline: float) -> tuple[bytes, float | None]:
    """Bytes up to the end of the first response (by ``Content-Length``), and when they were complete."""
    data = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except OSError:
            chunk = b""
        data += chunk
        if _complete(data) or not chunk:
            return data, (time.monotonic() if data else None)
    return data, None


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False  # no length: the body ends when the connection does


def _closed(sock: socket.socket, deadline: float) -> bool:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset: closed too
        return True


def _parse(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body
