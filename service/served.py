"""Which files serve a registry entry: its own, or its ONNX export when it has no graphs of its own.

The service runs an entry on ONNX Runtime when it has ONNX graphs and on torch otherwise. The shipped
``default`` CLIP has none (its 90 MB text graph does not fit the shipped-size budget), so ``make serve``
and ``make bento`` export it once, on the user's machine (:func:`export_for_serving`), into the writable
registry under ``$SSLZOO_HOME``: a writable entry as its own next version (what ``sslzoo export`` does),
a built-in one under ``<name>-onnx``, because the built-in root is read-only and reserves its names.

:func:`served_entry` then pairs the entry the settings name with the files that serve it. An export
counts only while it is an export *of that entry*: its ``config.onnx["source"]`` names the
entry's reference and its embedding space equals the entry's (the same weight files byte for byte). A
built-in rebuilt since then gets a new space id, so its old export is ignored and exported again, never
served in its place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import zoo

log = logging.getLogger("sslzoo.service")
EXPORT_SUFFIX = "-onnx"
IMAGE_GRAPH, TEXT_GRAPH = "model.onnx", "text.onnx"


class ServingExportError(zoo.SslzooError):
    """A served entry has no ONNX graphs and exporting them failed (the reason is in the message)."""


@dataclass(frozen=True)
class ServedEntry:
    """A registry entry as the service serves it.

    Attributes:
        entry: What the settings name, and what requests and vectors name (``name@version``).
        files: Whose folder serves it: ``entry`` itself, or its ONNX export (the same weights).
    """

    entry: zoo.Entry
    files: zoo.Entry

    @property
    def onnx(self) -> bool:
        """Whether the files hold every ONNX graph the entry needs (the image tower's, and the text tower's)."""
        return has_onnx(self.files)

    @property
    def exported(self) -> bool:
        """Whether the files are the entry's export rather than its own."""
        return self.files.path != self.entry.path


def has_onnx(entry: zoo.Entry) -> bool:
    """Whether ``entry`` carries its image graph, and its text graph when it is a CLIP."""
    graphs = [IMAGE_GRAPH, TEXT_GRAPH] if entry.read_config().is_clip else [IMAGE_GRAPH]
    return all((entry.path / graph).is_file() for graph in graphs)


def export_name(entry: zoo.Entry) -> str:
    """The registry name an export of ``entry`` is saved under: its own, or ``<name>-onnx`` for a built-in."""
    return f"{entry.name}{EXPORT_SUFFIX}" if entry.builtin else entry.name


def is_export_of(candidate: zoo.Entry, entry: zoo.Entry) -> bool:
    """Whether ``candidate`` holds ONNX graphs exported from exactly ``entry``'s weights."""
    onnx = candidate.read_config().onnx or {}
    return (onnx.get("source") == entry.ref and has_onnx(candidate)
            and candidate.embedding_space == entry.embedding_space)


def find_export(entry: zoo.Entry, registry: zoo.Registry) -> zoo.Entry | None:
    """The newest export of ``entry`` in the registry, or None."""
    name = export_name(entry)
    candidates = [e for e in registry.entries() if e.name == name and e.ref != entry.ref]
    return next((e for e in reversed(candidates) if is_export_of(e, entry)), None)


def served_entry(entry: zoo.Entry, registry: zoo.Registry) -> ServedEntry:
    """``entry`` with the files that serve it: its own when it has ONNX graphs or no export exists."""
    if has_onnx(entry):
        return ServedEntry(entry, entry)
    export = find_export(entry, registry)
    return ServedEntry(entry, export or entry)


def export_for_serving(entry: zoo.Entry, registry: zoo.Registry, *, int8: bool = False) -> ServedEntry:
    """``entry`` served by ONNX Runtime: its own graphs, an earlier export, or one made now (minutes, once).

    Args:
        entry: A registry entry (``name@version``).
        registry: Where to look for an export and to save a new one (its writable root).
        int8: Also write the int8 graphs (each only where it passes its parity gate).

    Raises:
        ServingExportError: The export failed: the torch and export extras are missing, the model has an
            operator ONNX cannot express, or a graph missed its parity gate. The message says which.
    """
    served = served_entry(entry, registry)
    if served.onnx:
        return served
    log.info("%s has no ONNX graphs: exporting them once into %s as %r (a few minutes on a laptop)",
             entry.ref, registry.home, export_name(entry))
    try:
        from export.pipeline import export_entry

        result = export_entry(entry.ref, int8=int8, name=export_name(entry), registry=registry)
    except (ImportError, zoo.SslzooError, RuntimeError, ValueError) as exc:  # MissingExtraError is an ImportError
        raise ServingExportError(f"exporting {entry.ref} to ONNX failed: {type(exc).__name__}: {exc}") from exc
    return ServedEntry(entry, result.entry)
