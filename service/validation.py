"""Checks shared by the endpoints: list sizes, ids, metadata, raw vectors, output encodings.

Pydantic (through BentoML) already rejects wrong JSON types with a 400; these checks cover what a
type cannot say: lengths that must agree, limits, finite numbers, unit vectors.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from service.errors import BadRequest, PayloadTooLarge
from service.index.base import ID_MAX_CHARS

MAX_METADATA_BYTES = 16 * 1024


def check_count(items: Sequence[Any] | None, field: str, limit: int) -> int:
    """The length of a non-empty list within ``limit``."""
    if items is None or len(items) == 0:
        raise BadRequest(f"'{field}' must be a non-empty list")
    if len(items) > limit:
        raise PayloadTooLarge(f"'{field}' has {len(items)} items; the limit is {limit} per request")
    return len(items)


def one_source(fields: dict[str, Sequence[Any] | None], what: str) -> tuple[str, Sequence[Any]]:
    """The single input field a request filled among alternatives (images, texts, vectors)."""
    given = [(name, value) for name, value in fields.items() if value is not None]
    if len(given) != 1:
        names = ", ".join(f"'{n}'" for n in fields)
        raise BadRequest(f"{what}: give exactly one of {names}" + (f" (got {len(given)})" if given else ""))
    return given[0]


def check_ids(ids: Sequence[Any] | None, expected: int, limit: int) -> list[str]:
    """Ids: strings, unique, one per item."""
    check_count(ids, "ids", limit)
    assert ids is not None
    if len(ids) != expected:
        raise BadRequest(f"'ids' has {len(ids)} entries but there are {expected} items")
    for item_id in ids:
        if not isinstance(item_id, str) or not item_id or len(item_id) > ID_MAX_CHARS:
            raise BadRequest(f"ids must be non-empty strings of at most {ID_MAX_CHARS} characters, got {item_id!r}")
    if len(set(ids)) != len(ids):
        raise BadRequest("ids repeat within the request")
    return list(ids)


def check_metadata(metadata: Sequence[Any] | None, expected: int) -> list[dict[str, Any]]:
    """One JSON object per item (empty objects when none were given)."""
    if metadata is None:
        return [{} for _ in range(expected)]
    if len(metadata) != expected:
        raise BadRequest(f"'metadata' has {len(metadata)} entries but there are {expected} items")
    out = []
    for i, meta in enumerate(metadata):
        if not isinstance(meta, dict):
            raise BadRequest(f"metadata[{i}] must be a JSON object")
        if len(json.dumps(meta)) > MAX_METADATA_BYTES:
            raise PayloadTooLarge(f"metadata[{i}] is over {MAX_METADATA_BYTES} bytes of JSON")
        out.append(meta)
    return out


def parse_vectors(raw: Sequence[Sequence[float]], field: str = "vectors") -> np.ndarray:
    """A list of equal-length lists of finite numbers → float32 ``[N, D]``."""
    try:
        vectors = np.asarray(raw, dtype=np.float32)
    except (ValueError, TypeError):
        raise BadRequest(f"'{field}' must be a list of equal-length lists of numbers") from None
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise BadRequest(f"'{field}' must be a list of equal-length, non-empty lists of numbers")
    if not np.isfinite(vectors).all():
        raise BadRequest(f"'{field}' holds NaN or infinite values (or numbers beyond float32)")
    return vectors


def fit_vectors(vectors: np.ndarray, dim: int, metric: str, field: str = "vectors") -> np.ndarray:
    """Check the width; unit-normalise for a cosine space (a copy: inputs may be read-only)."""
    if vectors.shape[1] != dim:
        raise BadRequest(f"'{field}' are {vectors.shape[1]}-dimensional but this space is {dim}-dimensional")
    if metric != "cosine":
        return vectors
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms == 0).any():
        raise BadRequest(f"'{field}' holds a zero vector, which has no direction in a cosine space")
    return np.asarray(vectors / norms, dtype=np.float32)


def encode_vectors(vectors: np.ndarray, encoding_format: str) -> list[Any]:
    """Rows as float lists, or as base64 of little-endian float32 (OpenAI's ``encoding_format``)."""
    if encoding_format == "float":
        return vectors.tolist()  # float32 → float64 repr: exact, and C-speed (no per-number Python)
    if encoding_format == "base64":
        little = np.ascontiguousarray(vectors, dtype="<f4")
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    raise BadRequest(f"encoding_format must be 'float' or 'base64', got {encoding_format!r}")

