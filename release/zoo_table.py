"""The model-zoo table: the built-in entries' key figures as markdown, generated, never typed.

Every cell is read from what an entry recorded: metrics from training and evaluation
(``config.metrics``, read through :mod:`zoo.figures` as ``sslzoo list`` reads them), parameters and
ONNX Runtime throughput from ``sslzoo ship`` (``config.shipped``). ``--write README.md``
replaces the text between the ``<!-- zoo-table:begin -->`` and ``<!-- zoo-table:end -->`` markers,
so the README shows exactly what this command prints. Run: ``sslzoo zoo-table [--write README.md]``
or ``python -m release.zoo_table``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo.config import EncoderConfig
from zoo.errors import ConfigError
from zoo.figures import key_figures, metric_value, percent, zero_shot_metric
from zoo.registry import Entry, Registry, builtin_root

BEGIN, END = "<!-- zoo-table:begin -->", "<!-- zoo-table:end -->"


def _zero_shot_cell(config: EncoderConfig) -> str:
    figure = zero_shot_metric(config)
    where = [figure.get("dataset"), figure.get("split")] if isinstance(figure, Mapping) else []
    label = "/".join(str(w) for w in where if w)
    per = " per concept" if isinstance(figure, Mapping) and figure.get("per") == "concept" else ""
    return percent(metric_value(figure)) + (f" ({label}{per})" if label else "")


def _arch(config: EncoderConfig) -> str:
    if config.text is None:
        readout = [f"stem + layer1{f'–{config.stages}' if config.stages > 1 else ''}"] if config.stages else []
        readout += ["whole map"] if config.pooling == "flatten" else []
        return f"`{config.arch}`" + (f" ({', '.join(readout)})" if readout else "")
    return f"`{config.arch}` + `{config.text.arch}`"


def _speed(shipped: Mapping[str, Any]) -> str:
    speed = shipped.get("throughput") or {}
    if "onnx_img_s" in speed and speed.get("onnx_shipped"):
        return f"{speed['onnx_img_s']:,.0f}"
    if "torch_img_s" in speed:
        return f"— (torch {speed['torch_img_s']:,.0f})"
    return "—"


def row(entry: Entry) -> list[str]:
    """One table row for a built-in entry."""
    config = entry.read_config()
    shipped = config.shipped or {}
    params = (shipped.get("params") or {}).get("total")
    figures = key_figures(config)
    return [f"`{entry.name}`", config.method, _arch(config), config.data or "—",
            f"{params / 1e6:.2f} M" if params else "—", percent(figures["knn"]), percent(figures["linear"]),
            _zero_shot_cell(config), _speed(shipped)]


HEADER = ["name", "method", "arch", "data", "params", "k-NN %", "linear %", "zero-shot %", "img/s ORT"]


def builtin_entries(root: Path | None = None) -> list[Entry]:
    """The latest version of every model in the built-in root."""
    root = root or builtin_root()
    registry = Registry(root / ".no-home", readonly_roots=(root,))
    return [e for e in registry.entries() if e.builtin and "latest" in e.aliases]


def render_table(entries: Sequence[Entry]) -> str:
    """The markdown table plus a footnote on how the throughput was measured."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row(e)) + " |" for e in entries]
    speeds = [(e.read_config().shipped or {}).get("throughput") or {} for e in entries]
    if speeds:
        batch = next((s["batch"] for s in speeds if "batch" in s), "?")
        lines += ["", "k-NN (weighted, as recorded) and linear probe: top-1 on the test split of the entry's data; "
                  "zero-shot: the entry's recorded zero-shot top-1, per concept where recorded. "
                  f"img/s: ONNX Runtime, batch {batch}, 1 thread, "
                  f"measured by `sslzoo ship` on {_machines(entries, speeds)}; `— (torch N)` where no "
                  "ONNX graph is shipped (N: torch img/s)."]
    return "\n".join(lines)


def _machines(entries: Sequence[Entry], speeds: Sequence[dict[str, Any]]) -> str:
    """The CPU each row was measured (and built) on, naming the rows of each when there are several.

    Throughputs of different CPUs are not comparable, and a rebuild is bit for bit only on the same kind.
    """
    rows_of: dict[str, list[str]] = {}
    for entry, speed in zip(entries, speeds, strict=True):
        rows_of.setdefault(speed.get("cpu") or "an unrecorded CPU", []).append(f"`{entry.name}`")
    if len(rows_of) == 1:
        return next(iter(rows_of))
    return " and ".join(f"{cpu} ({', '.join(names)})" for cpu, names in sorted(rows_of.items()))


def zoo_table(root: Path | None = None) -> str:
    """The table for the built-in root (a note when it is empty)."""
    entries = builtin_entries(root)
    if not entries:
        return "_No models are built in yet: run `make zoo`._"
    return render_table(entries)


def replace_between_markers(text: str, table: str) -> str:
    """``text`` with the part between the zoo-table markers replaced by ``table``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ConfigError(f"the markers {BEGIN} ... {END} are missing or out of order")
    return f"{text[: start + len(BEGIN)]}\n{table}\n{text[end:]}"


def table_in(text: str) -> str:
    """The table currently between the markers of ``text``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ConfigError(f"the markers {BEGIN} ... {END} are missing or out of order")
    return text[start + len(BEGIN) : end].strip("\n")


def write_table(readme: Path, root: Path | None = None) -> str:
    """Write the generated table into ``readme`` between its markers; returns the table."""
    table = zoo_table(root)
    readme.write_text(replace_between_markers(readme.read_text(), table))
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--write`` and ``--root``, shared by ``sslzoo zoo-table`` and ``python -m release.zoo_table``."""
    parser.add_argument("--write", type=Path, metavar="README", help="replace the table between the markers")
    parser.add_argument("--root", type=Path, help="built-in root to read (default: the package's)")


def run(args: argparse.Namespace) -> int:
    """Print the table, and write it into a README if asked."""
    table = write_table(args.write, args.root) if args.write else zoo_table(args.root)
    print(table)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m release.zoo_table``."""
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
