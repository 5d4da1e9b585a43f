"""Finding the installed files (Debian packages) that bundled datasets are made from.

Nothing is downloaded at run time, so a missing file is a setup problem with a known fix; the error
names every path searched and the command that installs it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from zoo.errors import DatasetNotAvailableError


def search_dirs(env_var: str | None, defaults: Sequence[str]) -> list[Path]:
    """Directories to search: ``$env_var`` first when set, then the packaged defaults."""
    override = os.environ.get(env_var) if env_var else None
    return ([Path(override).expanduser()] if override else []) + [Path(d) for d in defaults]


def find_file(
    filename: str, dirs: Sequence[Path], *, package: str, suffixes: Sequence[str] = ("", ".gz")
) -> Path:
    """The first ``dir/filename{suffix}`` that exists.

    Args:
        filename: File name to look for.
        dirs: Directories in order of preference.
        package: Debian package that installs it, named in the error.
        suffixes: Accepted variants, e.g. plain or gzipped.

    Raises:
        DatasetNotAvailableError: None exists; the message lists the paths and the install command.
    """
    tried = [d / f"{filename}{suffix}" for d in dirs for suffix in suffixes]
    for path in tried:
        if path.is_file():
            return path
    raise DatasetNotAvailableError(
        f"{filename} not found (searched: {', '.join(map(str, tried))}); install it with "
        f"`sudo apt-get install {package}` (or `make install`)"
    )
