"""The user-facing functions: ``save``, ``load``, ``locate``, ``list``, ``info``, ``delete``, ``alias``.

A façade: it joins the modules below it (references and the registry, the Hub, the backends) into the
calls users make, and nothing inside ``zoo`` imports it back (``pyproject.toml``'s import-linter layers
contract holds the package to that), so no module can need the façade in order to be imported.

Backends (``torch`` here, ``onnx`` from the export package) are found through the ``sslzoo.backends``
entry-point group, so ``zoo`` imports none of the packages built on it. Where the packages are present as
plain source without their distribution's metadata (a Bento's ``src/``, a container built from it), no
entry point announces ``onnx``; :data:`SOURCE_BACKENDS` names the same target for that case.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from zoo.config import EncoderConfig
from zoo.errors import RefError, UnknownNameError
from zoo.extras import needs_extra
from zoo.refs import parse_ref
from zoo.registry import Entry, Registry

Backend = Callable[..., Any]


def locate(ref: str | Path, registry: Registry | None = None) -> Entry:
    """The entry a reference names: a registry version, a folder, or a Hub repo pulled to the cache."""
    parsed = parse_ref(ref)
    if parsed.kind != "hub":
        return (registry or Registry()).locate(parsed)
    try:
        from zoo.hub import pull
    except ImportError:
        raise RefError(f"{parsed}: Hub support is not available in this installation") from None
    with needs_extra(f"pulling {parsed}"):  # timm and open_clip checkpoints are converted with torch
        return pull(str(parsed), registry=registry)


BACKEND_GROUP = "sslzoo.backends"
#: Backends of this project's own packages, by the ``module:function`` target their entry point names in
#: ``pyproject.toml``: used when that package's source is importable but no entry point supplies the name.
SOURCE_BACKENDS = {"onnx": "export.runtime:load_onnx"}


def _importable(target: str) -> bool:
    """Whether the target's top-level package can be found (without importing it: that costs seconds)."""
    return importlib.util.find_spec(target.partition(":")[0].partition(".")[0]) is not None


def backends() -> dict[str, EntryPoint]:
    """Backends installed through entry points, else found as source (``torch`` is built in)."""
    found = {name: EntryPoint(name, target, BACKEND_GROUP) for name, target in SOURCE_BACKENDS.items()
             if _importable(target)}
    for point in entry_points(group=BACKEND_GROUP):
        found[point.name] = point  # loaded lazily: importing onnxruntime or torch costs seconds
    return found


def _backend(name: str) -> Backend:
    if name == "torch":
        with needs_extra("the torch backend"):
            from zoo.torch_backend import load_torch

        return load_torch
    point = backends().get(name)
    if point is None:
        raise UnknownNameError(f"unknown backend {name!r}; installed: {sorted({'torch', *backends()})}")
    return point.load()  # type: ignore[no-any-return]


def load(ref: str | Path, *, backend: str = "torch", verify: bool = True,
         registry: Registry | None = None, **options: Any) -> Any:
    """A ready encoder (eval mode) from a name, ``name@version``, folder, or ``hf-hub:`` repo.

    The manifest is checked first, so a modified or truncated file is an error naming that file.
    The returned model carries ``entry`` and ``embedding_space`` attributes.
    """
    entry = locate(ref, registry)
    manifest = entry.verify() if verify else entry.manifest()
    model = _backend(backend)(entry.path, entry.read_config(), **options)
    model.entry = entry
    model.embedding_space = manifest["embedding_space"]
    return model


def save(model: Any, name: str, *, aliases: tuple[str, ...] = (), extra_files: Mapping[str, bytes] | None = None,
         figures: Mapping[str, str] | None = None, registry: Registry | None = None) -> Entry:
    """Save a model as a new immutable version of ``name``.

    Args:
        model: An ``ImageEncoder`` or ``ClipModel`` (anything with ``config`` and ``tensor_files()``).
        name: The registry name; saving it again makes the next version.
        aliases: Aliases to point at the new version.
        extra_files: More files for the entry (plots, recipes); covered by the manifest.
        figures: Captions → file names among ``extra_files``, shown in the model card.
        registry: Defaults to the one under ``$SSLZOO_HOME``.
    """
    with needs_extra("zoo.save"):
        from zoo.torch_backend import model_files

    files = model_files(model)
    return save_files(name, model.config, {**files, **(extra_files or {})}, figures=figures,
                      aliases=aliases, registry=registry)


def save_files(name: str, config: EncoderConfig, files: Mapping[str, bytes], *,
               figures: Mapping[str, str] | None = None, aliases: tuple[str, ...] = (),
               registry: Registry | None = None) -> Entry:
    """Save prepared files with a config and a rendered model card (:meth:`Registry.save_entry`)."""
    return (registry or Registry()).save_entry(name, config, files, figures=figures, aliases=aliases)


def list_models(registry: Registry | None = None) -> list[Entry]:
    """Every version of every model."""
    return (registry or Registry()).entries()


def info(ref: str | Path, registry: Registry | None = None) -> dict[str, Any]:
    """What an entry is: ref, path, aliases, embedding space, config, files."""
    entry = locate(ref, registry)
    manifest = entry.manifest()
    return {
        "ref": entry.ref, "path": str(entry.path), "aliases": list(entry.aliases), "builtin": entry.builtin,
        "embedding_space": manifest["embedding_space"], "files": manifest["files"],
        "config": entry.read_config().to_dict(),
    }


def delete(ref: str, registry: Registry | None = None) -> list[Entry]:
    """Delete a version (``name@v``) or a whole model (``name``)."""
    return (registry or Registry()).delete(ref)


def alias(ref: str, name: str, registry: Registry | None = None) -> Entry:
    """Point an alias at a version."""
    return (registry or Registry()).set_alias(ref, name)
