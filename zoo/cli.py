"""The ``sslzoo`` command.

``zoo`` owns ``list``, ``info``, ``rm``, ``alias`` and ``data``; the other packages add their own
subcommands (train, eval, export, serve, push, pull) through the ``sslzoo.commands`` entry-point group,
each a function that receives the subparsers object and adds its parser with ``func`` set.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

import zoo
from zoo.errors import SslzooError


def _cmd_list(args: argparse.Namespace) -> int:
    entries = zoo.list_models()
    if args.json:
        print(json.dumps([{"ref": e.ref, "aliases": list(e.aliases), "path": str(e.path)} for e in entries], indent=2))
        return 0
    if not entries:
        print(f"no models yet in {zoo.sslzoo_home()}")
        return 0
    print(f"{'ref':32} {'method':8} {'arch':28} {'dim':>5} {'key metric':24} aliases")
    for entry in entries:
        config = entry.read_config()
        key = next(iter(sorted(config.metrics.items())), None)
        shown = ""
        if key:
            value = key[1]["value"] if isinstance(key[1], dict) else key[1]
            shown = f"{key[0]}={value:.3g}" if isinstance(value, float) else f"{key[0]}={value}"
        tag = " (built-in)" if entry.builtin else ""
        print(f"{entry.ref:32} {config.method:8} {config.arch:28} {config.embed_dim:>5} {shown:24} "
              f"{','.join(entry.aliases)}{tag}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(zoo.info(args.ref), indent=2, sort_keys=True))
    return 0


def _cmd_rm(args: argparse.Namespace) -> int:
    for entry in zoo.delete(args.ref):
        print(f"deleted {entry.ref}")
    return 0


def _cmd_alias(args: argparse.Namespace) -> int:
    entry = zoo.alias(args.ref, args.alias)
    print(f"{args.alias} -> {entry.ref}")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from zoo.data import list_datasets, load_dataset

    if not args.name:
        print("\n".join(list_datasets()))
        return 0
    data = load_dataset(args.name, args.split, seed=args.seed)
    classes = len(data.class_names) if data.class_names else 0
    print(f"{data.name}/{data.split}: {len(data)} images {data.images.shape[1:]}, {classes} classes, "
          f"licence {data.license}; source: {data.source}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser with zoo's subcommands and every installed package's."""
    parser = argparse.ArgumentParser(prog="sslzoo", description="Self-supervised image encoders: train, "
                                     "register, export and serve.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("list", help="list registry entries with their key figures")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("info", help="show an entry's config, files and embedding space")
    p.add_argument("ref", help="name, name@version, name@alias, ./folder or hf-hub:org/repo")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("rm", help="delete a version (name@v) or a whole model (name)")
    p.add_argument("ref")
    p.set_defaults(func=_cmd_rm)
    p = sub.add_parser("alias", help="point an alias at a version")
    p.add_argument("ref")
    p.add_argument("alias")
    p.set_defaults(func=_cmd_alias)
    p = sub.add_parser("data", help="list datasets, or build one and describe it")
    p.add_argument("name", nargs="?")
    p.add_argument("--split", default="train")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_data)
    for point in sorted(entry_points(group="sslzoo.commands"), key=lambda p: p.name):
        module = point.value.partition(":")[0]
        try:
            add_command = point.load()
        except ModuleNotFoundError as exc:  # a package of this distribution not built yet
            if exc.name is None or not module.startswith(exc.name):
                raise
            logging.getLogger(__name__).debug("subcommand %s unavailable: %s", point.name, exc)
            continue
        add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one clear line and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except SslzooError as exc:
        print(f"sslzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
