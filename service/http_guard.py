"""An ASGI middleware that checks every request body before BentoML parses it.

It does six things, each of which must happen before the body reaches an endpoint:

- refuses bodies over ``max_request_bytes`` with 413 (from ``Content-Length``, or while reading);
- refuses media types other than JSON and multipart with 415 (BentoML would guess JSON and fail), and
  a multipart type without a usable boundary with 400, from the headers alone;
- requires the API key on write endpoints when ``SSLZOO_API_KEY`` is set (401);
- reads the whole body with a pause limit (``body_timeout_s``): a body shorter than its
  ``Content-Length``, or a chunked body without its last chunk, is answered 400 once the client
  goes quiet, instead of holding the connection (and a graceful shutdown) until the traffic timeout;
- refuses a JSON body that does not even start like an object (a multipart body sent as JSON);
- turns ``multipart/form-data`` into the JSON the endpoints take: each uploaded file becomes a
  ``data:`` URI in a list under its field name, other fields are parsed as JSON when they are JSON.
  BentoML's own multipart handling would fetch URLs given in file fields and 500 on failures.

Every refusal is a JSON error sent with ``Connection: close``: the client may still be sending a body
nobody will read. Whatever happens below, each request gets an answer: BentoML's timeout middleware
(outside this one) waits for the first byte of a response, so an exception that escaped without one
used to hold the request for the full traffic timeout and then fail with a bare 500.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from service.errors import (
    BadRequest,
    Internal,
    PayloadTooLarge,
    ServiceError,
    Unauthorized,
    UnsupportedMediaType,
    error_answer,
)
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
MAX_BOUNDARY = 70  # RFC 2046, section 5.1.1
ACCEPTED = ("application/json", "multipart/form-data")
_NOT_SPACE = re.compile(rb"[^ \t\r\n]")  # JSON's whitespace is these four


async def _reply(send: Send, error: ServiceError) -> None:
    response = error_answer(error.status, error.kind, error.message, headers={"Connection": "close"})
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def parse_media_type(header: str) -> tuple[str, dict[str, str]]:
    """``(media type, parameters)`` of a ``Content-Type`` header, names lower-cased, quotes removed."""
    media, *rest = header.split(";")
    params = {}
    for param in rest:
        name, sep, value = param.partition("=")
        if sep:
            params[name.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), params


def check_media_type(header: str | None) -> tuple[str, str | None]:
    """``(media type, multipart boundary)`` of an accepted ``Content-Type``; a clear error otherwise.

    The boundary is checked here, before the body is read, so a multipart type without one is refused
    at once (the form parser below would only find out after the whole body arrived).
    """
    media, params = parse_media_type(header or "application/json")
    if media not in ACCEPTED:
        raise UnsupportedMediaType(f"Content-Type {media!r} is not accepted; send application/json or "
                                   "multipart/form-data")
    if media != "multipart/form-data":
        return media, None
    boundary = params.get("boundary", "")
    if not 0 < len(boundary) <= MAX_BOUNDARY or boundary.endswith(" "):
        found = (f"boundary {boundary!r} breaks RFC 2046: 1 to {MAX_BOUNDARY} characters, no trailing space"
                 if boundary else "it has no boundary")
        raise BadRequest(f"Content-Type multipart/form-data needs a boundary parameter ({found}): send "
                         "'multipart/form-data; boundary=<token>' as HTTP clients do for file uploads, "
                         "or a JSON body as application/json")
    return media, boundary


class RequestGuard:
    """Size, media type, API key, body completeness and multipart handling for every request with a body."""

    def __init__(self, app: ASGIApp, settings: Settings | None = None) -> None:
        self.app = app
        self.settings = settings or Settings.from_env()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            try:
                self._authorise(scope)
                _, boundary = check_media_type(_header(scope, b"content-type"))
                body = await self._read(scope, receive)
                if boundary is None:
                    _check_json_object(body)
                else:
                    body = await self._multipart_to_json(scope, body, boundary)
                    scope = {**scope, "headers": [(k, v) for k, v in scope["headers"]
                                                  if k.lower() not in (b"content-type", b"content-length")]
                             + [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]}
            except ServiceError as refused:
                log.info("request refused (%d): %s", refused.status, refused.message)
                await _reply(send, refused)
                return
            receive = _replay(body, receive)
        await self._answered(scope, receive, send)

    async def _answered(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; if it fails or returns before starting a response, answer 500 in its place."""
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            if started:
                raise
            log.exception("%s %s failed before answering", scope.get("method"), scope.get("path"))
            await _reply(send, Internal())
            return
        if not started:
            log.error("%s %s returned without a response", scope.get("method"), scope.get("path"))
            await _reply(send, Internal("the request ended without a response; the server log has details"))

    def _authorise(self, scope: Scope) -> None:
        key = self.settings.api_key
        if not key or scope.get("path") not in WRITE_PATHS:
            return
        given = _header(scope, b"x-api-key")
        bearer = _header(scope, b"authorization") or ""
        if bearer.lower().startswith("bearer "):
            given = bearer[7:].strip()
        if given is None or not hmac.compare_digest(given.encode(), key.encode()):
            raise Unauthorized(f"{scope.get('path')} needs the API key: send "
                               "'Authorization: Bearer <key>' or 'X-API-Key: <key>'")

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, refused when too large, or when the client pauses or leaves before its end."""
        limit = self.settings.max_request_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body of {declared} bytes; the limit is {limit} bytes")
        chunks, size = [], 0
        pause = self.settings.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), pause)
            except TimeoutError:
                raise BadRequest(_incomplete(size, declared, f"no data for {pause:g} s")) from None
            if message["type"] == "http.disconnect":
                # Nobody reads the answer, but BentoML's timeout middleware waits for one.
                raise BadRequest(_incomplete(size, declared, "the client disconnected"))
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _multipart_to_json(scope: Scope, body: bytes, boundary: str) -> bytes:
        if b"--" + boundary.encode("latin-1") + b"--" not in body:
            raise BadRequest(f"malformed multipart body: no closing boundary '--{boundary}--' (a truncated "
                             "upload, or a body that is not multipart)")
        # Without "app" in the scope, Starlette raises its parser's error instead of an HTTPException.
        request = Request({"type": "http", "headers": scope["headers"]}, _replay(body, None))
        try:
            form = await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
        except (MultiPartException, ValueError, KeyError, AssertionError) as exc:
            raise BadRequest(f"malformed multipart body: {exc}") from None
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


def _check_json_object(body: bytes) -> None:
    """Refuse a JSON body that cannot be the object every endpoint takes, naming what it looks like.

    Only the first byte is read (the full parse is BentoML's); this catches a multipart body sent as
    JSON, which BentoML would report only as "1 validation error for Input".
    """
    found = _NOT_SPACE.search(body)  # no copy of a large body, unlike bytes.lstrip
    head = body[found.start():found.start() + 16] if found else b""
    if head[:1] != b"{":
        looks = f"it starts with {head!r}" if head else "it is empty"
        hint = " (multipart, by the look of it: send its multipart Content-Type)" if head[:2] == b"--" else ""
        raise BadRequest(f"the body must be a JSON object; {looks}{hint}")


def _incomplete(size: int, declared: str | None, why: str) -> str:
    expected = f"of the {declared} bytes its Content-Length announced" if declared else "(chunked, no last chunk)"
    return f"incomplete request body: {why} after {size} bytes {expected}"


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
