"""Zoo entries as BentoML models: what ``bentoml build`` packs and what a Bento serves from.

Each registry entry the service is configured to serve (``SSLZOO_DEFAULT_MODEL`` and ``SSLZOO_MODELS``)
becomes one BentoML model. Its folder is a one-entry registry root, ``models/<name>/<version>/`` holding
the files that serve the entry (weights, ONNX graphs, config, card, manifest, tokenizer), so the runtime
reads it through the same :class:`zoo.Registry` and the same manifest check as any other entry, and a
vector served from a Bento names the same ``name@version`` as one served from the source tree.

Those files are the entry's own, or, for an entry without ONNX graphs that has been exported
(:mod:`service.served`; the shipped ``default``), its export's: the same weight files byte for byte (the
same embedding space), plus the graphs, their parity figures and a manifest covering them, packed under
the served entry's name and version. So ``default`` resolves to ONNX Runtime in ``bentoml serve .``
(the store's copy comes before the built-in root) and in the Bento, and a Bento serving only exported
entries needs no torch.

The tag is derived from those files: ``sslzoo-<name>:v<version>-<sha256 of manifest.json>``. The manifest
lists the sha256 of every file, so importing the same files again finds the same tag, and a changed
file (or an export in place of the entry's own files) makes a new one. ``python -m service.import_models``
exports and imports the served entries ahead of time; the service's references import a missing entry
themselves when BentoML first needs it (``bentoml build`` asking for its info, ``bentoml serve .``
resolving it), so a build never packs a Bento without its models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException, NotFound
from bentoml.models import BentoModel

import zoo
from service.served import ServedEntry, served_entry
from service.settings import Settings
from zoo.manifest import MANIFEST, verify_manifest
from zoo.registry import ALIASES

log = logging.getLogger("sslzoo.service")
PREFIX = "sslzoo-"
PROJECT_LABEL = ("project", "sslzoo")


def model_tag(entry: zoo.Entry, files: zoo.Entry | None = None) -> str:
    """``sslzoo-<name>:v<version>-<12 hex of the files' manifest's sha256>``: the same files, the same tag.

    ``files`` is the folder that serves ``entry`` (its export); the entry's own by default.
    """
    if entry.version is None:
        raise zoo.RefError(f"{entry.path}: only registry entries (name@version) become BentoML models")
    digest = hashlib.sha256(((files or entry).path / MANIFEST).read_bytes()).hexdigest()[:12]
    try:
        return str(bentoml.Tag(f"{PREFIX}{entry.name.lower()}", f"v{entry.version}-{digest}"))
    except (BentoMLException, ValueError) as exc:
        raise zoo.RefError(f"model {entry.name!r} cannot be a BentoML model name: {exc}") from None


def entry_labels(served: ServedEntry) -> dict[str, str]:
    """What ``bentoml models list`` and a deployment platform show of a served entry (and which backend runs it)."""
    entry = served.entry
    config = entry.read_config()
    labels = {PROJECT_LABEL[0]: PROJECT_LABEL[1], "zoo_ref": entry.ref, "method": config.method,
              "architecture": config.arch, "embedding_space": entry.embedding_space, "license": config.license,
              "backend": "onnx" if served.onnx else "torch"}
    if served.exported:
        labels["onnx_export"] = served.files.ref
    return labels


def stored_model(tag: str) -> bentoml.Model | None:
    """The model under ``tag`` in the active store (a Bento's own, when serving one), or None."""
    try:
        return bentoml.models.get(tag)
    except NotFound:
        return None


def import_entry(served: ServedEntry | zoo.Entry) -> bentoml.Model:
    """The served entry as a BentoML model, imported (and checked against its manifest) unless already stored.

    A plain entry is served by its own files.
    """
    if isinstance(served, zoo.Entry):
        served = ServedEntry(served, served)
    entry, files = served.entry, served.files
    tag = model_tag(entry, files)
    existing = stored_model(tag)
    if existing is not None:
        return existing
    files.verify()  # a corrupted source is refused here, not found later inside a Bento
    config = entry.read_config()
    metadata: dict[str, Any] = {"embed_dim": config.embed_dim, "metric": config.metric,
                                "normalize": config.normalize, "clip": config.is_clip, "source": config.source}
    try:
        with bentoml.models.create(tag, labels=entry_labels(served), metadata=metadata) as model:
            model_dir = Path(model.path) / "models" / entry.name
            shutil.copytree(files.path, model_dir / str(entry.version), copy_function=shutil.copyfile)
            aliases = {alias: entry.version for alias in entry.aliases if alias != "latest"}
            if aliases:  # ``name@alias`` keeps working inside the Bento
                (model_dir / ALIASES).write_text(json.dumps(aliases, sort_keys=True))
            verify_manifest(model_dir / str(entry.version))
    except BentoMLException:
        raced = stored_model(tag)  # another process imported the same entry first
        if raced is None:
            raise
        return raced
    log.info("imported %s%s into BentoML's model store as %s", entry.ref,
             f" (served by its ONNX export {files.ref})" if served.exported else "", tag)
    return bentoml.models.get(tag)


class ZooModel(BentoModel):
    """A service's reference to a zoo entry's BentoML model, imported when BentoML first needs it.

    ``bentoml build`` asks for the model's info and ``bentoml serve .`` resolves it before the workers
    start; both find the entry in the store afterwards. A Bento does not use this class: it resolves the
    plain BentoML models it packed.
    """

    served: ServedEntry

    def __init__(self, served: ServedEntry) -> None:
        super().__init__(model_tag(served.entry, served.files))
        object.__setattr__(self, "served", served)  # BentoModel is frozen; the entry is set once, here

    def ensure(self) -> bentoml.Model:
        """The stored model, imported from the registry first when missing."""
        return import_entry(self.served)

    def to_info(self, alias: str | None = None) -> Any:
        """BentoML's record of the model (what a Bento lists), after making sure the store has it."""
        self.ensure()
        return super().to_info(alias)

    def resolve(self, base_path: Any = None) -> Any:
        """The stored model (copied into ``base_path`` when given), after making sure the store has it."""
        self.ensure()
        return super().resolve(base_path)


def served_entries(settings: Settings, registry: zoo.Registry) -> tuple[list[ServedEntry], list[str]]:
    """The registry entries the settings name, each with the files that serve it, and the references the registry lacks.

    The service leaves a missing one to the runtime (it starts not ready and says why); the import
    command refuses it.
    """
    entries: dict[str, ServedEntry] = {}
    missing = []
    for ref in settings.served_refs():
        try:
            entry = registry.resolve(ref)
        except zoo.SslzooError:
            missing.append(ref)
            continue
        if entry.ref not in entries:
            entries[entry.ref] = served_entry(entry, registry)
    return list(entries.values()), missing


def references(settings: Settings, registry: zoo.Registry | None = None) -> list[ZooModel]:
    """One :class:`ZooModel` per served entry: the models ``bentoml build`` packs into the Bento."""
    served, _ = served_entries(settings, registry or zoo.Registry())  # inside a Bento, none: it lists its own
    for item in served:
        if not item.onnx:
            log.info("%s has no ONNX graphs and no export: it is served (and packed) for the torch backend; "
                     "`make serve` or `python -m service.import_models` exports it first", item.entry.ref)
    return [ZooModel(item) for item in served]


def packed_roots(bento: bentoml.Bento | None, refs: Iterable[BentoModel]) -> tuple[Path, ...]:
    """Registry roots of the models the service carries: every model a Bento packed, else its references.

    A Bento lists the exact tags it packed (BentoML finds them in the Bento's own copy inside a container,
    in the user's store when serving ``sslzoo:<tag>``), so what it serves does not depend on the settings
    it is served with; from the source tree, only the references' exact tags are meant, never an older
    import of the same name.
    """
    tags = [info.tag for info in bento.info.all_models] if bento is not None else [ref.tag for ref in refs]
    roots = []
    for tag in tags:
        model = stored_model(str(tag))
        if model is None:
            log.warning("BentoML model %s is not in the store; the registry serves without it", tag)
        elif model.info.labels.get(PROJECT_LABEL[0]) == PROJECT_LABEL[1]:
            roots.append(Path(model.path))
    return tuple(roots)
