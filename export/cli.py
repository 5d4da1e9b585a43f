"""``sslzoo export REF``: found by ``zoo.cli`` through the ``sslzoo.commands`` entry point.

torch is imported only when the command runs, so ``sslzoo --help`` and the other commands stay fast.
"""

from __future__ import annotations

import argparse
from typing import Any

from export import DEFAULT_OPSET


def _run(args: argparse.Namespace) -> int:
    from export.pipeline import export_entry
    from export.report import format_reports

    result = export_entry(args.ref, int8=args.int8, opset=args.opset, name=args.name)
    print(f"exported {result.source.ref} -> {result.entry.ref} ({result.entry.path})")
    print(format_reports(result.reports.values(), result.files))
    print(f"files: {', '.join(sorted(result.files.values()))}")
    return 0


def add_export_command(subparsers: Any) -> None:
    """Add ``export`` to the ``sslzoo`` subcommands."""
    parser = subparsers.add_parser(
        "export", help="export an entry to ONNX (fp32, and int8 if it keeps parity) as a new version",
        description="Export REF's image tower (and text tower for CLIP) to ONNX with a dynamic batch axis, "
                    "check it against PyTorch on golden, random and labelled images, optionally quantise to "
                    "int8, and save everything as a new version of the model with the parity figures.")
    parser.add_argument("ref", help="name, name@version, name@alias, ./folder or hf-hub:org/repo")
    parser.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                        help="also write int8 files where they meet the int8 tolerance (default: on)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--name", default=None,
                        help="registry name for the new version (default: REF's name; needed for built-ins)")
    parser.set_defaults(func=_run)
