"""An ASGI middleware that checks every request body before BentoML parses it.

It does four things, each of which must happen before the body reaches an endpoint:

- refuses bodies over ``max_request_bytes`` with 413 (from ``Content-Length``, or while reading);
- refuses media types other than JSON and multipart with 415 (BentoML would guess JSON and fail);
- requires the API key on write endpoints when ``SSLZOO_API_KEY`` is set (401);
- turns ``multipart/form-data`` into the JSON the endpoints take: each uploaded file becomes a
  ``data:`` URI in a list under its field name, other fields are parsed as JSON when they are JSON.
  BentoML's own multipart handling would fetch URLs given in file fields and 500 on failures.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from service.errors import error_body
from service.images import encode_data_uri
from service.settings import Settings

log = logging.getLogger("sslzoo.service")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WRITE_PATHS = frozenset({"/index/add", "/index/delete", "/index/drop", "/label_sets"})
MAX_FILES = 256
MAX_FIELDS = 64


class _Refused(Exception):
    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


async def _reply(send: Send, status: int, kind: str, message: str) -> None:
    body = json.dumps(error_body(status, kind, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class RequestGuard:
    """Size, media type, API key and multipart handling for every request with a body."""

    def __init__(self, app: ASGIApp, settings: Settings | None = None) -> None:
        self.app = app
        self.settings = settings or Settings.from_env()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        try:
            self._authorise(scope)
            media = (_header(scope, b"content-type") or "application/json").split(";")[0].strip().lower()
            if media not in ("application/json", "multipart/form-data"):
                raise _Refused(415, "unsupported_media_type",
                               f"Content-Type {media!r} is not accepted; send application/json or multipart/form-data")
            body = await self._read(scope, receive)
            if media == "multipart/form-data":
                body = await self._multipart_to_json(scope, body)
                scope = {**scope, "headers": [(k, v) for k, v in scope["headers"]
                                              if k.lower() not in (b"content-type", b"content-length")]
                         + [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
        except _Refused as refused:
            log.info("request refused (%d): %s", refused.status, refused.message)
            await _reply(send, refused.status, refused.kind, refused.message)
            return
        await self.app(scope, _replay(body, receive), send)

    def _authorise(self, scope: Scope) -> None:
        key = self.settings.api_key
        if not key or scope.get("path") not in WRITE_PATHS:
            return
        given = _header(scope, b"x-api-key")
        bearer = _header(scope, b"authorization") or ""
        if bearer.lower().startswith("bearer "):
            given = bearer[7:].strip()
        if given is None or not hmac.compare_digest(given.encode(), key.encode()):
            raise _Refused(401, "unauthorized", f"{scope.get('path')} needs the API key: send "
                           "'Authorization: Bearer <key>' or 'X-API-Key: <key>'")

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_request_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _Refused(413, "too_large", f"request body of {declared} bytes; the limit is {limit} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refused(413, "too_large", f"request body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    async def _multipart_to_json(scope: Scope, body: bytes) -> bytes:
        request = Request(scope, _replay(body, None))
        try:
            form = await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
        except (MultiPartException, ValueError, KeyError, AssertionError) as exc:
            raise _Refused(400, "invalid_request", f"malformed multipart body: {exc}") from None
        data: dict[str, Any] = {}
        try:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    mime = (value.content_type or "application/octet-stream").lower()
                    data.setdefault(key, []).append(encode_data_uri(await value.read(), mime))
                    continue
                try:
                    parsed: Any = json.loads(value)
                except ValueError:
                    parsed = value
                if key in data:
                    previous = data[key]
                    data[key] = [*previous, parsed] if isinstance(previous, list) else [previous, parsed]
                else:
                    data[key] = parsed
        finally:
            await form.close()
        return json.dumps(data).encode()


def _replay(body: bytes, receive: Receive | None) -> Receive:
    """A ``receive`` that yields the buffered body once, then waits on the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if receive is None:
            return {"type": "http.disconnect"}
        return await receive()

    return replay
