"""Local references to entries: a registry name or a folder, resolved without the network.

The Hub form (``hf-hub:org/repo``) needs a pull first, which is :mod:`zoo.hub`'s job and sits above this
module; :func:`zoo.locate` combines both. Everything below the façade that needs an entry from a
reference (pushing one to the Hub, exporting one) resolves it here, so no module imports the façade
back.
"""

from __future__ import annotations

from pathlib import Path

from zoo.errors import RefError
from zoo.pickles import is_pickle, pickle_refusal
from zoo.refs import Ref, parse_ref
from zoo.registry import Entry, Registry


def locate_local(ref: str | Path | Ref, registry: Registry | None = None) -> Entry:
    """The entry a registry reference (``name[@version|@alias]``) or a folder path names.

    A pickle file, or a folder holding only pickle weights, is refused with the way to convert it.

    Raises:
        RefError: for a Hub reference (pull it first), a missing folder, a file, or a folder that is not an entry.
        UnsafeWeightsError: for pickle weights.
    """
    parsed = ref if isinstance(ref, Ref) else parse_ref(ref)
    if parsed.kind == "name":
        return (registry or Registry()).resolve(parsed)
    if parsed.kind == "hub":
        raise RefError(f"{parsed} is a Hub repository: pull it first (zoo.hub.pull), or load it with zoo.locate")
    path = Path(parsed.target).expanduser()
    if is_pickle(path):
        raise pickle_refusal(path)
    if not path.exists():
        raise RefError(f"no such folder: {path}")
    if path.is_file():
        raise RefError(f"{path} is a file; give the entry's folder (with config.json and model.safetensors)")
    if not (path / "model.safetensors").is_file():
        pickles = sorted(p for p in path.iterdir() if is_pickle(p))
        if pickles:
            raise pickle_refusal(pickles[0])
        raise RefError(f"{path} has no model.safetensors: not a model folder")
    return Entry(path.name, None, path.resolve())
