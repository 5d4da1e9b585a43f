"""Write constraints.txt: the exact version of every package ``sslzoo[dev]`` installs, as this venv has it.

pyproject.toml gives ranges (a library that pins breaks its users' environments); the constraints file
records the one combination the project is tested with, so ``make install`` reproduces it. Only the
closure of sslzoo's own requirements is written, so a package someone installed into the venv by hand
never becomes a constraint.

    .venv/bin/python scripts/freeze_constraints.py            # rewrite constraints.txt
    .venv/bin/python scripts/freeze_constraints.py --check    # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
# The exact versions sslzoo is tested with (Python 3.11, Linux x86-64), applied by `make install`:
#   pip install -c constraints.txt -e '.[dev]'
# pyproject.toml keeps ranges. Regenerate after changing the venv: python scripts/freeze_constraints.py
"""


def _own_requirements(extras: set[str]) -> list[Requirement]:
    """The requirements of sslzoo's ``extras``, read from pyproject.toml (the installed metadata may be stale)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    own = canonicalize_name(project["name"])
    wanted, todo = set(), list(extras)
    reqs = [Requirement(r) for r in project["dependencies"]]
    while todo:
        extra = todo.pop()
        if extra in wanted:
            continue
        wanted.add(extra)
        for raw in project["optional-dependencies"][extra]:
            req = Requirement(raw)
            if canonicalize_name(req.name) == own:  # a self-reference such as sslzoo[torch,serve]
                todo += sorted(req.extras)
            else:
                reqs.append(req)
    return reqs


def closure(extras: set[str]) -> dict[str, str]:
    """Installed name → version for every package the requirements pull in, transitively."""
    pinned: dict[str, str] = {}
    todo = [(req, frozenset[str]()) for req in _own_requirements(extras)]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, parent_extras = todo.pop()
        env = [{"extra": e} for e in parent_extras] or [{"extra": ""}]
        if req.marker is not None and not any(req.marker.evaluate(e) for e in env):
            continue
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            sys.exit(f"{req.name} is required but not installed: run `make install` first")
        pinned[dist.metadata["Name"]] = dist.version
        todo += [(Requirement(raw), frozenset(req.extras)) for raw in dist.requires or []]
    return pinned


def render(pinned: dict[str, str]) -> str:
    """The file's text: the header, then ``name==version`` lines sorted by name."""
    lines = [f"{name}=={version}" for name, version in sorted(pinned.items(), key=lambda kv: kv[0].lower())]
    return HEADER + "\n".join(lines) + "\n"


def main() -> int:
    """Write (or check) constraints.txt for the dev extra, which includes every other."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the file differs")
    parser.add_argument("--output", type=Path, default=ROOT / "constraints.txt")
    args = parser.parse_args()
    text = render(closure({"dev"}))
    if args.check:
        current = args.output.read_text() if args.output.is_file() else ""
        if current != text:
            print(f"{args.output} is out of date: run python scripts/freeze_constraints.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output} ({text.count(chr(10)) - HEADER.count(chr(10))} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
