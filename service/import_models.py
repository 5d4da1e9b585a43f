"""``python -m service.import_models [REF ...]``: the served entries into BentoML's model store, ahead of a build.

``make bento`` runs it before ``bentoml build``; running it again imports nothing and prints the same tags.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import zoo
from service.models import import_entry, served_entries
from service.settings import Settings


def main(argv: Sequence[str] | None = None) -> None:
    """Import ``SSLZOO_DEFAULT_MODEL`` and ``SSLZOO_MODELS`` (or the named references); print tag, size, folder."""
    parser = argparse.ArgumentParser(prog="python -m service.import_models",
                                     description="Import zoo entries into BentoML's model store for `bentoml build`.")
    parser.add_argument("refs", nargs="*", help="registry references (default: SSLZOO_DEFAULT_MODEL and SSLZOO_MODELS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = Settings.from_env()
    registry = zoo.Registry()
    entries, missing = served_entries(replace(settings, default_model=args.refs[0], models=",".join(args.refs[1:]))
                                      if args.refs else settings, registry)
    if missing:
        parser.error(f"not in the registry ({registry.home}): {', '.join(missing)}")
    for entry in entries:
        try:
            model = import_entry(entry)
        except zoo.SslzooError as exc:  # a corrupted entry or a name BentoML cannot take
            parser.exit(1, f"{entry.ref}: {exc}\n")
        size = sum(p.stat().st_size for p in Path(model.path).rglob("*") if p.is_file())
        print(f"{entry.ref:<16} {model.tag}  {size / 2**20:.1f} MiB  {model.path}")


if __name__ == "__main__":
    main()
