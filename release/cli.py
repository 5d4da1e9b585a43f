"""``sslzoo ship`` and ``sslzoo zoo-table``, added to the ``sslzoo`` command through entry points.

Building these parsers imports neither torch nor onnxruntime (every ``sslzoo`` call builds them);
the commands import :mod:`release.ship` when they run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from release import DEFAULT_BUDGET_MB, zoo_table


def _cmd_ship(args: argparse.Namespace) -> int:
    from release.ship import ship_entry

    result = ship_entry(args.ref, args.name, root=args.root, dtype=args.dtype, budget_mb=args.budget_mb,
                        int8_onnx=args.int8)
    print(result.summary())
    return 0


def add_ship_command(subparsers: Any) -> None:
    """Add ``ship``: how a built-in model is made from a trained, exported entry."""
    p = subparsers.add_parser(
        "ship", help="copy an entry into the built-in root, compactly, with recorded parity",
        description="Copy SRC_REF into the built-in root as NAME@1 (replacing an earlier shipped NAME): fp16 "
                    "weights if the probe parity holds, package weights referenced by sha256, ONNX graphs kept "
                    "within the size budget; prints the sizes.")
    p.add_argument("ref", metavar="SRC_REF", help="name, name@version, name@alias or ./folder (ideally exported)")
    p.add_argument("--name", required=True, help="the built-in name")
    p.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="weight storage")
    p.add_argument("--root", type=Path, help="built-in root (default: the package's zoo/builtin)")
    p.add_argument("--budget-mb", type=float, default=DEFAULT_BUDGET_MB, help="size limit of the whole root")
    p.add_argument("--int8", action="store_true", help="also ship int8 ONNX graphs when they fit")
    p.set_defaults(func=_cmd_ship)


def add_zoo_table_command(subparsers: Any) -> None:
    """Add ``zoo-table``: how the built-in models are shown."""
    p = subparsers.add_parser("zoo-table",
                              help="print the built-in models' markdown table (and write it into a README)")
    zoo_table.add_arguments(p)
    p.set_defaults(func=zoo_table.run)
