"""Malformed request bodies: each answered 4xx with a JSON message at once, none holding a shutdown.

A multipart type without a boundary once escaped the request guard as an exception; BentoML's timeout
middleware waits for a response to start, so the request hung for the whole traffic timeout (120 s)
and so did a graceful shutdown. A body shorter than its ``Content-Length`` hung the same way, waiting
for bytes that never came. The guard's pieces are checked here in-process, then against the real
server over a bare socket (no client library sends such requests), then with one SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from raw_http import raw_request
from svc_helpers import Server, _alive, descendants, png_bytes

from service.errors import BadRequest, UnsupportedMediaType
from service.http_guard import RequestGuard, check_media_type
from service.settings import Settings

#: No model to load: the guard answers these before any model is needed, and the start is seconds shorter.
NO_MODEL = {"SSLZOO_DEFAULT_MODEL": "not-in-registry"}
#: "Within a few seconds" of one SIGTERM; before the fix it took the 120 s traffic timeout.
SHUTDOWN_LIMIT = 20.0
BOUNDARY = "hostileBoundary"
JSON_BODY = b'{"index": "vecs", "vectors": [[1.0, 0.0]]}'
FORM = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n").encode() + png_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()
CUT = FORM[: len(FORM) // 2]
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"

#: name: (Content-Type, extra headers, body, a word the error message must hold)
HOSTILE: dict[str, tuple[str, dict[str, str], bytes, str]] = {
    "multipart without a boundary": ("multipart/form-data", {}, JSON_BODY, "boundary"),
    "multipart with an empty boundary": ("multipart/form-data; boundary=", {}, JSON_BODY, "boundary"),
    "multipart with a 71-character boundary": ("multipart/form-data; boundary=" + "b" * 71, {}, JSON_BODY,
                                               "boundary"),
    "JSON under a multipart type": (MULTIPART, {}, JSON_BODY, "closing boundary"),
    "truncated multipart": (MULTIPART, {}, CUT, "closing boundary"),
    "multipart short of its Content-Length": (MULTIPART, {"Content-Length": str(len(FORM))}, CUT, "incomplete"),
    "JSON short of its Content-Length": ("application/json", {"Content-Length": "500"}, JSON_BODY, "incomplete"),
    "chunked JSON without its last chunk": ("application/json", {"Transfer-Encoding": "chunked"},
                                            f"{len(JSON_BODY):x}\r\n".encode() + JSON_BODY + b"\r\n", "incomplete"),
    "multipart under a JSON type": ("application/json", {}, FORM, "multipart, by the look of it"),
}


# -- in-process: the guard's parts ------------------------------------------------------------------
@pytest.mark.parametrize(("header", "expected"), [
    (None, ("application/json", None)),
    ("application/json; charset=utf-8", ("application/json", None)),
    ("Multipart/Form-Data; boundary=abc", ("multipart/form-data", "abc")),
    ('multipart/form-data; charset=utf-8; boundary="a b:c"', ("multipart/form-data", "a b:c")),
])
def test_accepted_media_types_and_their_boundary(header, expected):
    assert check_media_type(header) == expected


@pytest.mark.parametrize(("header", "error", "words"), [
    ("multipart/form-data", BadRequest, "has no boundary"),
    ("multipart/form-data; boundary", BadRequest, "has no boundary"),
    ('multipart/form-data; boundary=""', BadRequest, "has no boundary"),
    ("multipart/form-data; boundary=" + "x" * 71, BadRequest, "1 to 70 characters"),
    ('multipart/form-data; boundary="ends-in-space "', BadRequest, "no trailing space"),
    ("text/plain", UnsupportedMediaType, "'text/plain' is not accepted"),
    ("multipart/mixed; boundary=x", UnsupportedMediaType, "'multipart/mixed' is not accepted"),
])
def test_refused_media_types_name_the_problem(header, error, words):
    with pytest.raises(error, match=words):
        check_media_type(header)


def run_guard(app: Any, messages: list[dict[str, Any]], headers: dict[str, str], pause: float = 0.05
              ) -> list[dict[str, Any]]:
    """Send ``messages`` through the guard, then nothing (a client that stopped sending)."""
    sent: list[dict[str, Any]] = []
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)  # a client that never sends the rest
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/embed",
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    guard = RequestGuard(app, Settings(body_timeout_s=pause))
    asyncio.run(asyncio.wait_for(guard(scope, receive, send), 10))
    return sent


def answer(sent: list[dict[str, Any]]) -> tuple[int, dict[str, Any], dict[bytes, bytes]]:
    start = sent[0]
    return start["status"], json.loads(sent[1]["body"]), dict(start["headers"])


async def never_called(scope, receive, send):
    raise AssertionError("the app must not see a refused request")


@pytest.mark.parametrize(("messages", "words"), [
    ([], "no data for 0.05 s after 0 bytes of the 40 bytes"),
    ([{"type": "http.request", "body": b'{"images"', "more_body": True}], "after 9 bytes of the 40 bytes"),
    ([{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}],
     "the client disconnected after 1 bytes"),
])
def test_a_body_that_stops_short_is_answered_400_and_the_connection_closed(messages, words):
    status, body, headers = answer(run_guard(never_called, messages, {"content-length": "40"}))
    assert status == 400 and "incomplete request body" in body["error"] and words in body["error"]
    assert headers[b"connection"] == b"close"


async def raises(scope, receive, send):
    raise RuntimeError("a bug below the guard")


async def returns_silently(scope, receive, send):
    await receive()


@pytest.mark.parametrize("app", [raises, returns_silently])
def test_an_app_that_fails_without_answering_still_gets_its_request_answered(app):
    body = {"type": "http.request", "body": b"{}", "more_body": False}
    status, payload, _ = answer(run_guard(app, [body], {"content-type": "application/json"}))
    assert status == 500 and payload["type"] == "internal" and payload["error"]


# -- the real server --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(service_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("hostile_data")
    srv = Server(service_home, data, data / "server.log", **NO_MODEL)
    try:
        yield srv.wait(ready=False)
    finally:
        srv.stop()


def hostile_headers(content_type: str, extra: dict[str, str], body: bytes) -> dict[str, str]:
    framing = {} if "Transfer-Encoding" in extra else {"Content-Length": str(len(body))}
    return {"Content-Type": content_type, **framing, **extra}


@pytest.mark.parametrize("path", ["/embed", "/search", "/index/add"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_body_gets_a_4xx_json_message(server, case, path):
    content_type, extra, body, words = HOSTILE[case]
    response = raw_request(server.port, "POST", path, hostile_headers(content_type, extra, body), body)
    assert response.status, f"no answer: {response}"
    assert 400 <= response.status < 500, response
    assert words in response.json()["error"], response.json()
    assert response.closed and response.headers["connection"] == "close"  # the guard's refusal


def test_the_server_keeps_serving_after_hostile_bodies(server):
    for content_type, extra, body, _ in HOSTILE.values():
        raw_request(server.port, "POST", "/embed", hostile_headers(content_type, extra, body), body, close_wait=0)
    added = server.post("/index/add", {"index": "after", "ids": ["a"], "vectors": [[1.0, 0.0]],
                                       "embedding_space": "s"})
    assert added.status_code == 200, added.text
    assert server.get("/healthz").status_code == 200


def hold(port: int, request: bytes) -> socket.socket:
    """Send a request and keep its connection open without reading the answer."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(request)
    return sock


@pytest.mark.slow
def test_one_sigterm_stops_the_server_with_hostile_requests_open(service_home: Path, tmp_path: Path):
    srv = Server(service_home, tmp_path, tmp_path / "server.log", **NO_MODEL).wait(ready=False)
    held: list[socket.socket] = []
    try:
        head = "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n"
        for content_type, length, body in [("multipart/form-data", len(JSON_BODY), JSON_BODY),
                                           ("application/json", 1000, JSON_BODY),
                                           (MULTIPART, len(FORM), CUT)] * 2:
            held.append(hold(srv.port, head.format(content_type, length).encode() + body))
        held.append(hold(srv.port, b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Ty"))  # headers never end
        time.sleep(0.2)  # in the server's hands, some still waiting for their bodies
        workers = descendants(srv.proc.pid)
        start = time.monotonic()
        os.killpg(srv.proc.pid, signal.SIGTERM)
        try:
            srv.proc.wait(timeout=SHUTDOWN_LIMIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server still ran {SHUTDOWN_LIMIT} s after one SIGTERM:\n{srv.tail()}")
        while any(_alive(pid) for pid in workers) and time.monotonic() - start < SHUTDOWN_LIMIT:
            time.sleep(0.05)
        print(f"\nserver and its workers gone {time.monotonic() - start:.2f} s after one SIGTERM")
        for sock in held[:-1]:  # every request with a body was answered before the server went
            sock.settimeout(5)
            assert sock.recv(12).startswith(b"HTTP/1.1 4")
    finally:
        for sock in held:
            sock.close()
        srv.stop()
