"""The ``sslzoo`` command.

``zoo`` owns ``list``, ``info``, ``rm``, ``alias``, ``data``, ``push`` and ``pull``; the other packages add
their own subcommands (``train``, ``eval``, ``plot``, ``export``, and release's ``ship`` and ``zoo-table``)
through the ``sslzoo.commands`` entry-point group, each a function that receives the subparsers object
and adds its parser with ``func`` set.
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
from zoo.extras import needs_extra
from zoo.hub import formats as hub_formats


def _cmd_list(args: argparse.Namespace) -> int:
    entries = zoo.list_models()
    if args.json:
        print(json.dumps([{"ref": e.ref, "aliases": list(e.aliases), "path": str(e.path)} for e in entries], indent=2))
        return 0
    if not entries:
        print(f"no models yet in {zoo.sslzoo_home()}")
        return 0
    from zoo.figures import key_figures, percent

    print(f"{'ref':32} {'method':8} {'arch':28} {'dim':>5} {'k-NN':>6} {'linear':>6} {'0-shot':>6}  aliases")
    for entry in entries:
        config = entry.read_config()
        figures = key_figures(config)
        shown = " ".join(f"{percent(figures[k]):>6}" for k in ("knn", "linear", "zero_shot"))
        tag = " (built-in)" if entry.builtin else ""
        print(f"{entry.ref:32} {config.method:8} {config.arch:28} {config.embed_dim:>5} {shown}  "
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


def _cmd_push(args: argparse.Namespace) -> int:
    from zoo.hub import push

    result = push(args.ref, args.repo, revision=args.revision, private=args.private, endpoint=args.endpoint,
                  tag=args.tag)
    print(f"pushed {args.ref} to {result.repo_id}@{result.revision}: commit {result.commit} "
          f"(embedding space {result.embedding_space})\n{result.url}")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from zoo import hub
    from zoo.hub import catalogue

    if args.catalogue:
        print(f"{'name':24} {'licence':14} {'format':12} repo")
        for item in catalogue.CATALOGUE:
            print(f"{item.name:24} {item.license:14} {item.format:12} {item.repo_id}")
        return 0
    if not args.repo:
        print("sslzoo pull: error: name a repo (org/repo[@revision]) or use --catalogue", file=sys.stderr)
        return 2
    entry = hub.pull(args.repo, revision=args.revision, endpoint=args.endpoint, format=args.format)
    config = entry.read_config()
    source = config.hub
    pulled = f"{source.repo_id}@{source.commit} ({source.format})" if source else "no Hub record"
    print(f"{entry.ref}: {pulled}, "
          f"licence {config.license}, embedding space {entry.embedding_space}")
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
    p = sub.add_parser("push", help="upload an entry to a Hugging Face Hub model repo")
    p.add_argument("ref", help="name, name@version, name@alias or ./folder")
    p.add_argument("repo", help="org/repo (created if missing)")
    p.add_argument("--revision", help="branch to commit to (default main; created if missing)")
    p.add_argument("--tag", help="also tag the new commit, e.g. v1.0")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--endpoint", help="Hub URL (default $SSLZOO_HF_ENDPOINT, then huggingface_hub's)")
    p.set_defaults(func=_cmd_push)
    p = sub.add_parser("pull", help="download a Hub repo (sslzoo, timm or open_clip) and register it")
    p.add_argument("repo", nargs="?", help="org/repo, org/repo@revision, or a catalogue name")
    p.add_argument("--revision", help="branch, tag or commit sha (default main)")
    p.add_argument("--format", choices=hub_formats.formats(), help="pick one of several formats a repo has")
    p.add_argument("--endpoint", help="Hub URL (default $SSLZOO_HF_ENDPOINT, then huggingface_hub's)")
    p.add_argument("--catalogue", action="store_true", help="list recommended pretrained checkpoints")
    p.set_defaults(func=_cmd_pull)
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
        with needs_extra(f"sslzoo {args.command}"):
            return int(args.func(args) or 0)
    except SslzooError as exc:
        print(f"sslzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
