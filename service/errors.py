"""HTTP errors: every failure a client can cause becomes a 4xx with a JSON message, never a 5xx.

Endpoints raise :class:`ServiceError` subclasses (or the zoo's :class:`~zoo.SslzooError`); the
:func:`json_errors` decorator turns them into responses, so no endpoint builds an error by hand and a
bad request never reaches BentoML's generic 500 handler.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec

from starlette.responses import Response

from zoo import ConfigError, DataError, ManifestError, RefError, SslzooError, UnknownNameError, UnsafeWeightsError

log = logging.getLogger("sslzoo.service")
P = ParamSpec("P")


class ServiceError(Exception):
    """An error with the HTTP status it deserves; ``kind`` is a stable machine-readable name."""

    status = 400
    kind = "invalid_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServiceError):
    """Malformed or inconsistent input (400)."""


class Unauthorized(ServiceError):
    """A write without the API key (401)."""

    status, kind = 401, "unauthorized"


class NotFound(ServiceError):
    """A model, index or label set that does not exist (404)."""

    status, kind = 404, "not_found"


class Conflict(ServiceError):
    """Input that contradicts stored state: another embedding space or dimension (409)."""

    status, kind = 409, "conflict"


class PayloadTooLarge(ServiceError):
    """A body, an image or a list beyond the configured limits (413)."""

    status, kind = 413, "too_large"


class UnsupportedMediaType(ServiceError):
    """A body that is neither JSON nor multipart (415)."""

    status, kind = 415, "unsupported_media_type"


class Internal(ServiceError):
    """A failure of the server's own (500): the message points at the log, which has the details."""

    status, kind = 500, "internal"

    def __init__(self, message: str = "an unexpected error occurred; the server log has the traceback") -> None:
        super().__init__(message)


def error_body(status: int, kind: str, message: str) -> dict[str, Any]:
    """The JSON every error carries: a message to read, a kind to branch on, the status."""
    return {"error": message, "type": kind, "status": status}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response (no spaces: embeddings make bodies large)."""
    payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    return Response(payload, status_code=status, media_type="application/json", headers=headers)


def classify_exception(exc: BaseException) -> tuple[int, str, str]:
    """``(status, kind, message)`` for an exception raised while serving a request."""
    if isinstance(exc, ServiceError):
        return exc.status, exc.kind, exc.message
    if isinstance(exc, RefError):
        return 404, "not_found", str(exc)
    if isinstance(exc, UnknownNameError):
        return 404, "not_found", str(exc)
    if isinstance(exc, DataError):
        return 400, "invalid_request", str(exc)
    if isinstance(exc, (ManifestError, ConfigError, UnsafeWeightsError)):
        # The registry entry itself is broken: the server's fault, said plainly.
        return 500, "broken_model", str(exc)
    if isinstance(exc, SslzooError):
        return 400, "invalid_request", str(exc)
    unexpected = Internal()
    return unexpected.status, unexpected.kind, unexpected.message


def openai_error_body(status: int, kind: str, message: str) -> dict[str, Any]:
    """OpenAI's error shape, which its clients unpack into the exception message."""
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def error_answer(status: int, kind: str, message: str, openai_style: bool = False,
                 headers: dict[str, str] | None = None) -> Response:
    """An error's JSON response; a 401 names the scheme to retry with, as RFC 9110 requires."""
    challenge = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    body = (openai_error_body if openai_style else error_body)(status, kind, message)
    return json_response(body, status, {**challenge, **(headers or {})})


def error_response(exc: BaseException, openai_style: bool = False) -> Response:
    """The response for an exception, logged at the level it deserves."""
    status, kind, message = classify_exception(exc)
    if status >= 500:
        log.error("request failed: %s", message, exc_info=exc)
    else:
        log.info("request refused (%d %s): %s", status, kind, message)
    return error_answer(status, kind, message, openai_style)


def _decorator(openai_style: bool) -> Callable[[Callable[P, Awaitable[Any]]], Callable[P, Awaitable[Any]]]:
    def decorate(func: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                result = await func(*args, **kwargs)
            except Exception as exc:  # every failure must become a JSON answer
                return error_response(exc, openai_style)
            return result if isinstance(result, Response) else json_response(result)

        return wrapper

    return decorate


#: Decorate an async endpoint: its dict becomes JSON, its exceptions become error responses.
#: ``functools.wraps`` keeps the signature, so BentoML still derives the request schema from it.
json_errors = _decorator(openai_style=False)
#: The same, with errors in OpenAI's shape (``{"error": {"message": ...}}``) for ``/v1/*``.
openai_errors = _decorator(openai_style=True)
