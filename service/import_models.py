"""``python -m service.import_models [REF ...]``: the served entries into BentoML's model store, ahead of a build.

``make bento`` runs it before ``bentoml build``. A served entry without ONNX graphs (the shipped
``default``) is exported first (:func:`service.served.export_for_serving`; minutes, once per machine),
because the Bento's requirements (``bentofile.yaml``) bring ONNX Runtime and no torch: an entry that
cannot be exported is an error that names it and says why, not a Bento that cannot serve it. Running it
again exports and imports nothing and prints the same tags.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import zoo
from service.models import import_entry, served_entries
from service.served import ServingExportError, export_for_serving, export_name
from service.settings import Settings


def main(argv: Sequence[str] | None = None) -> None:
    """Export and import ``SSLZOO_DEFAULT_MODEL`` and ``SSLZOO_MODELS`` (or the named references); print each."""
    parser = argparse.ArgumentParser(prog="python -m service.import_models",
                                     description="Import zoo entries into BentoML's model store for `bentoml build`, "
                                                 "exporting to ONNX the ones without graphs.")
    parser.add_argument("refs", nargs="*", help="registry references (default: SSLZOO_DEFAULT_MODEL and SSLZOO_MODELS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = Settings.from_env()
    if args.refs:
        settings = replace(settings, default_model=args.refs[0], models=",".join(args.refs[1:]))
    registry = zoo.Registry()
    served, missing = served_entries(settings, registry)
    if missing:
        parser.error(f"not in the registry ({registry.home}): {', '.join(missing)}")
    for item in served:
        try:
            export_for_serving(item.entry, registry, int8=settings.precision == "int8")
        except ServingExportError as exc:
            hint = f"sslzoo export {item.entry.ref} --name {export_name(item.entry)}"
            parser.exit(1, f"{item.entry.ref} has no ONNX graphs and cannot be served from the Bento, whose "
                           f"requirements (bentofile.yaml) bring ONNX Runtime and no torch: {exc}. Run `{hint}` "
                           "(needs the export extra) to see why, or serve entries that have ONNX graphs "
                           "(SSLZOO_DEFAULT_MODEL, SSLZOO_MODELS).\n")
    served, _ = served_entries(settings, registry)  # an unpinned reference now names its export, if one was saved
    for item in served:
        try:
            model = import_entry(item)
        except zoo.SslzooError as exc:  # a corrupted entry or a name BentoML cannot take
            parser.exit(1, f"{item.entry.ref}: {exc}\n")
        size = sum(p.stat().st_size for p in Path(model.path).rglob("*") if p.is_file())
        source = f"export {item.files.ref}" if item.exported else "own files"
        print(f"{item.entry.ref:<16} {model.tag}  {'onnx' if item.onnx else 'torch':<5}  {size / 2**20:6.1f} MiB  "
              f"({source})  {model.path}")


if __name__ == "__main__":
    main()
