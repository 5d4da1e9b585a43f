"""Model references: the three explicit forms a user can write.

- ``name``, ``name@3``, ``name@alias`` — an entry in the local registry (``latest`` is implied);
- a folder path: absolute, or starting with ``./``, ``../`` or ``~``;
- ``hf-hub:org/repo`` or ``hf-hub:org/repo@revision`` — a Hugging Face Hub repository.

Nothing is guessed: ``org/repo`` alone is neither a folder nor a Hub repo until the user says which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import RefError

HUB_PREFIX = "hf-hub:"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
FORMS = "'name', 'name@version', 'name@alias', a folder path ('./dir', '/abs/dir', '~/dir'), or 'hf-hub:org/repo[@rev]'"


@dataclass(frozen=True)
class Ref:
    """A parsed reference: ``kind`` is ``name``, ``path`` or ``hub``."""

    kind: str
    target: str
    selector: str | None = None

    def __str__(self) -> str:
        if self.kind == "hub":
            return f"{HUB_PREFIX}{self.target}" + (f"@{self.selector}" if self.selector else "")
        return self.target + (f"@{self.selector}" if self.selector else "")


def parse_ref(ref: str | Path) -> Ref:
    """Parse a reference, or raise a RefError that lists the valid forms."""
    if isinstance(ref, Path):
        return Ref("path", str(ref))
    if not isinstance(ref, str) or not ref.strip():
        raise RefError(f"empty model reference; write {FORMS}")
    ref = ref.strip()
    if ref.startswith(HUB_PREFIX):
        repo, _, revision = ref[len(HUB_PREFIX):].partition("@")
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo):
            raise RefError(f"{ref!r}: a Hub reference is 'hf-hub:org/repo' or 'hf-hub:org/repo@revision'")
        return Ref("hub", repo, revision or None)
    if ref.startswith(("/", "./", "../", "~")) or ref in (".", ".."):
        return Ref("path", ref)
    if "/" in ref or "\\" in ref:
        raise RefError(
            f"{ref!r} is ambiguous: write './{ref}' for a folder or 'hf-hub:{ref}' for a Hub repository"
        )
    name, _, selector = ref.partition("@")
    if not NAME_RE.match(name):
        raise RefError(f"{ref!r} is not a valid model name (letters, digits, '.', '_', '-'); forms: {FORMS}")
    if "@" in ref and not selector:
        raise RefError(f"{ref!r}: nothing after '@'; write 'name@3' or 'name@alias'")
    if selector and not (selector.isdigit() or ALIAS_RE.match(selector)):
        raise RefError(f"{ref!r}: '{selector}' is neither a version number nor an alias")
    return Ref("name", name, selector or None)
