"""Turning client bytes into PIL images safely: data URIs and base64, with limits checked before decoding.

A PNG of 20000×20000 pixels compresses to a few kilobytes and would need gigabytes to decode, so the
pixel count is checked from the header, before any pixel is decoded (413). Corrupt, truncated and
non-image bytes are a 400 that says which item failed; a speck smaller than ``min_side`` is refused
too, because upscaling one pixel to the model's resolution gives a vector that means nothing.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from service.errors import BadRequest, PayloadTooLarge

_DATA_URI = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)


@dataclass(frozen=True)
class ImageLimits:
    """What one image may be: its encoded size, its pixel count and its smallest side."""

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 25_000_000
    min_side: int = 8


def is_data_uri(text: str) -> bool:
    """Whether a string is a ``data:`` URI (the OpenAI endpoint routes these to the image tower)."""
    return text[:5].lower() == "data:"


def decode_payload(item: str, where: str) -> bytes:
    """The bytes of a ``data:`` URI or a plain base64 string; URLs are refused, never fetched."""
    if not isinstance(item, str) or not item:
        raise BadRequest(f"{where}: expected a base64 string or a data: URI, got {type(item).__name__}")
    text = item.strip()
    if _URL.match(text):
        raise BadRequest(f"{where}: the service does not fetch URLs; send the image bytes as base64 or a data: URI")
    if is_data_uri(text):
        match = _DATA_URI.match(text)
        if match is None:
            raise BadRequest(f"{where}: malformed data: URI (expected data:image/png;base64,...)")
        mime = (match.group("mime") or "").lower()
        if mime and not mime.startswith("image/") and mime != "application/octet-stream":
            raise BadRequest(f"{where}: data: URI has media type {mime!r}; an image/* type is expected")
        if not match.group("b64"):
            raise BadRequest(f"{where}: only base64 data: URIs are accepted (data:image/png;base64,...)")
        text = text[match.end():]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:  # tolerate line breaks (``base64`` on the command line wraps at 76 columns)
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{where}: not valid base64") from None


def open_image(data: bytes, limits: ImageLimits, where: str) -> Image.Image:
    """Decode one image fully, after checking its size from the header.

    Raises:
        PayloadTooLarge: More encoded bytes or pixels than the limits allow.
        BadRequest: Not an image, corrupt or truncated, or smaller than ``min_side``.
    """
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(f"{where}: {len(data)} bytes; the limit is {limits.max_bytes} bytes per image")
    if not data:
        raise BadRequest(f"{where}: empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > limits.max_pixels:
                raise PayloadTooLarge(
                    f"{where}: {width}×{height} = {width * height} pixels; the limit is {limits.max_pixels} "
                    "(refused before decoding, as a decompression-bomb guard)"
                )
            if min(width, height) < limits.min_side:
                raise BadRequest(f"{where}: {width}×{height} is too small; each side must be at least "
                                 f"{limits.min_side} pixels")
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard (``Image.MAX_IMAGE_PIXELS``) fired first, also from the header alone.
        raise PayloadTooLarge(f"{where}: {exc} The limit here is {limits.max_pixels} pixels.") from None
    except UnidentifiedImageError:
        raise BadRequest(f"{where}: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncation and corruption as OSError ("image file is truncated"), SyntaxError
        # (malformed headers in some plugins) or ValueError; all are the client's bytes.
        raise BadRequest(f"{where}: corrupt or truncated image ({exc})") from None
    return image


def decode_images(items: Sequence[str], limits: ImageLimits, field: str = "images") -> list[Image.Image]:
    """Every item of a request's image list as a decoded PIL image, naming the first bad one."""
    if not items:
        raise BadRequest(f"'{field}' is empty")
    return [open_image(decode_payload(item, f"{field}[{i}]"), limits, f"{field}[{i}]") for i, item in enumerate(items)]


def encode_data_uri(data: bytes, mime: str = "image/png") -> str:
    """Bytes as a base64 ``data:`` URI (used to pass multipart uploads through the JSON endpoints)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
