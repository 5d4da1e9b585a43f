"""Named label sets for zero-shot classification, kept in one JSON file under the data directory.

Registering a label set once lets clients classify with ``label_set: "animals"`` instead of sending
the same hundred names with every request; the classifier itself is cached by :mod:`zoo.zeroshot`.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo.zeroshot import DEFAULT_TEMPLATES

MAX_LABELS = 1000
MAX_TEMPLATES = 32
MAX_TEXT_CHARS = 300


@dataclass(frozen=True)
class LabelSet:
    """Class names and the prompt templates they go through."""

    name: str
    labels: tuple[str, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES


def check_labels(labels: Any, templates: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Validated ``(labels, templates)``, or a ValueError naming what is wrong."""
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        raise ValueError("candidate_labels must be a non-empty list of non-empty strings")
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} candidate labels")
    if len(set(labels)) != len(labels):
        raise ValueError("candidate_labels repeat")
    if not isinstance(templates, (list, tuple)) or not templates:
        raise ValueError("hypothesis templates must be a non-empty list of strings")
    if len(templates) > MAX_TEMPLATES:
        raise ValueError(f"at most {MAX_TEMPLATES} hypothesis templates")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(f"each hypothesis template needs exactly one '{{}}', got {template!r}")
    if any(len(x) > MAX_TEXT_CHARS for x in [*labels, *templates]):
        raise ValueError(f"labels and templates are limited to {MAX_TEXT_CHARS} characters")
    return tuple(labels), tuple(templates)


class LabelSetStore:
    """Label sets by name, persisted atomically (tmp file, fsync, rename) on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._sets: dict[str, LabelSet] = {}
        if path.is_file():
            for raw in json.loads(path.read_text()).values():
                self._sets[raw["name"]] = LabelSet(raw["name"], tuple(raw["labels"]), tuple(raw["templates"]))

    def get(self, name: str) -> LabelSet | None:
        """A label set, or ``None``."""
        with self._lock:
            return self._sets.get(name)

    def all(self) -> list[LabelSet]:
        """Every label set, by name."""
        with self._lock:
            return [self._sets[k] for k in sorted(self._sets)]

    def put(self, label_set: LabelSet) -> None:
        """Add or replace a label set, durably."""
        with self._lock:
            self._sets[label_set.name] = label_set
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
            with open(tmp, "w") as handle:
                json.dump({k: asdict(v) for k, v in self._sets.items()}, handle, indent=1)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
