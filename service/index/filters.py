"""Metadata filters: validated from request JSON, compiled to parameterised SQLite ``json_extract``.

Only equality (and presence) is offered, which every vector database supports, so a store swap never
changes what a filter means. Field names are checked against a strict pattern and passed as bound
parameters, so a filter can never inject SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from service.index.base import MetadataFilter

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}(\.[A-Za-z_][A-Za-z0-9_-]{0,63}){0,7}$")
MAX_CONDITIONS = 16


def json_path(field_name: str) -> str:
    """``a.b`` → ``$."a"."b"`` (quoted so dashes and keywords are plain keys)."""
    return "$" + "".join(f'."{part}"' for part in field_name.split("."))


def check_field(field_name: Any) -> str:
    """A field name, or a ValueError saying what a valid one looks like."""
    if not isinstance(field_name, str) or not _FIELD.match(field_name):
        raise ValueError(f"invalid metadata field {field_name!r}: letters, digits, '_' and '-', dots for nesting")
    return field_name


def parse_filter(raw: Mapping[str, Any] | None, exists: tuple[str, ...] = ()) -> MetadataFilter:
    """A request's ``filter`` object → :class:`MetadataFilter`.

    Raises:
        ValueError: A field name that is not a plain dotted path, a value that is not a JSON scalar,
            or too many conditions.
    """
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise ValueError("filter must be an object of field → value (equality on metadata)")
    if len(raw) + len(exists) > MAX_CONDITIONS:
        raise ValueError(f"at most {MAX_CONDITIONS} filter conditions")
    equals: dict[str, Any] = {}
    for key, value in raw.items():
        check_field(key)
        if not (value is None or isinstance(value, (str, int, float, bool))):
            raise ValueError(f"filter value of {key!r} must be a string, number, boolean or null (equality only)")
        equals[key] = value
    return MetadataFilter(equals, tuple(check_field(f) for f in exists))


def to_sql(where: MetadataFilter) -> tuple[str, list[Any]]:
    """``(clause, params)`` for ``SELECT ... FROM items WHERE <clause>``."""
    clauses: list[str] = []
    params: list[Any] = []
    for key, value in where.equals.items():
        path = json_path(key)
        if value is None:
            clauses.append("json_type(metadata, ?) = 'null'")
            params.append(path)
        elif isinstance(value, bool):
            clauses.append("json_type(metadata, ?) = ?")
            params += [path, "true" if value else "false"]
        else:
            # json_type keeps "1" (a string) from matching 1 (a number); 1 and 1.0 are equal numbers.
            kinds = "('text')" if isinstance(value, str) else "('integer', 'real')"
            clauses.append(f"(json_extract(metadata, ?) = ? AND json_type(metadata, ?) IN {kinds})")
            params += [path, value, path]
    for key in where.exists:
        clauses.append("json_type(metadata, ?) != 'null'")
        params.append(json_path(key))
    return (" AND ".join(clauses) or "1"), params
