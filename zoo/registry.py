"""The local registry: immutable, atomically written version folders under ``$SSLZOO_HOME``.

Layout::

    $SSLZOO_HOME/models/<name>/<version>/   model.safetensors, config.json, README.md, manifest.json, ...
    $SSLZOO_HOME/models/<name>/aliases.json {"best": 2}
    $SSLZOO_HOME/models/<name>/.tmp-*/      a save in progress (never listed)

A save writes a hidden temporary folder, fsyncs it, and renames it to the next version number: a
process killed mid-save leaves only a hidden folder, never a half-written version. ``latest`` is not
stored; it is the highest version. Shipped models sit in a read-only built-in root with the same
layout.

A name in both roots is the user's: a model the user saved before a release shipped a built-in of the
same name keeps loading *and* keeps getting new versions, because breaking someone's own work on an
upgrade is worse than hiding a built-in they never used (it stays loadable by folder path). A name
that only a built-in holds cannot be saved to: the new model would silently shadow the shipped one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.card import render_card
from zoo.config import EncoderConfig
from zoo.errors import ConfigError, RefError
from zoo.manifest import MANIFEST, build_manifest, read_manifest, verify_manifest
from zoo.pickles import is_pickle, pickle_refusal
from zoo.refs import ALIAS_RE, NAME_RE, Ref, parse_ref

log = logging.getLogger(__name__)
ALIASES = "aliases.json"
CONFIG = "config.json"
CARD = "README.md"
STALE_TMP_SECONDS = 3600


def sslzoo_home() -> Path:
    """``$SSLZOO_HOME``, default ``~/.cache/sslzoo``; read at every call so tests can redirect it."""
    return Path(os.environ.get("SSLZOO_HOME") or Path.home() / ".cache" / "sslzoo").expanduser()


def builtin_root() -> Path:
    """The read-only root of the models shipped inside the package."""
    return Path(__file__).resolve().parent / "builtin"


def default_readonly_roots() -> tuple[Path, ...]:
    """The shipped models' root, unless ``$SSLZOO_BUILTIN=0`` hides it (a registry of only your own models)."""
    return () if os.environ.get("SSLZOO_BUILTIN", "1") == "0" else (builtin_root(),)


@dataclass(frozen=True)
class Entry:
    """One version of one model, or a plain folder loaded by path (``name`` is then the folder)."""

    name: str
    version: int | None
    path: Path
    aliases: tuple[str, ...] = ()
    builtin: bool = False

    @property
    def ref(self) -> str:
        """The reference that names exactly this entry."""
        return f"{self.name}@{self.version}" if self.version is not None else str(self.path)

    def read_config(self) -> EncoderConfig:
        """Parse ``config.json``."""
        return read_config(self.path)

    def manifest(self) -> dict[str, Any]:
        """The entry's manifest, unverified (``verify`` checks it)."""
        return read_manifest(self.path)

    def verify(self) -> dict[str, Any]:
        """Check every file against the manifest; returns it."""
        return verify_manifest(self.path)

    @property
    def embedding_space(self) -> str:
        """The id that vectors of this entry carry."""
        return str(self.manifest()["embedding_space"])


def read_config(folder: Path) -> EncoderConfig:
    """Read and validate ``config.json`` of a folder."""
    path = folder / CONFIG
    if not path.is_file():
        raise ConfigError(f"{path} is missing")
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    return EncoderConfig.from_dict(raw)


def config_bytes(config: EncoderConfig) -> bytes:
    """``config.json``'s contents for a config: the one serialiser, so equal configs are equal bytes."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True).encode()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_durably(path: Path, data: bytes) -> None:
    """Write, flush and fsync one file."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    write_file_durably(tmp, json.dumps(obj, indent=2, sort_keys=True).encode())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Registry:
    """A writable root (the user's) plus read-only roots (shipped models)."""

    def __init__(self, home: Path | None = None, readonly_roots: tuple[Path, ...] | None = None) -> None:
        self.home = (home or sslzoo_home()).expanduser()
        self.readonly_roots = readonly_roots if readonly_roots is not None else default_readonly_roots()

    # -- reading -----------------------------------------------------------------------------------
    def _model_dirs(self, name: str) -> list[tuple[Path, bool]]:
        found = [(self.home / "models" / name, False)]
        found += [(root / "models" / name, True) for root in self.readonly_roots]
        return [(path, ro) for path, ro in found if path.is_dir()]

    @staticmethod
    def _versions(model_dir: Path) -> list[int]:
        return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir())

    @staticmethod
    def _aliases(model_dir: Path) -> dict[str, int]:
        path = model_dir / ALIASES
        if not path.is_file():
            return {}
        try:
            return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
        except (ValueError, AttributeError) as exc:
            raise ConfigError(f"{path} is corrupt: {exc}") from exc

    def _entry(self, name: str, model_dir: Path, version: int, builtin: bool) -> Entry:
        aliases = tuple(sorted(a for a, v in self._aliases(model_dir).items() if v == version))
        if version == max(self._versions(model_dir)):
            aliases = ("latest", *aliases)
        return Entry(name, version, model_dir / str(version), aliases, builtin)

    def resolve(self, ref: str | Ref) -> Entry:
        """The entry a ``name[@version|@alias]`` reference names."""
        parsed = parse_ref(ref) if isinstance(ref, str) else ref
        if parsed.kind != "name":
            raise RefError(f"{parsed} is not a registry name")
        dirs = self._model_dirs(parsed.target)
        if not dirs:
            known = ", ".join(self.names()) or "none yet"
            raise RefError(f"no model named {parsed.target!r} in the registry ({self.home}); known: {known}")
        model_dir, builtin = dirs[0]
        versions = self._versions(model_dir)
        if not versions:
            raise RefError(f"model {parsed.target!r} has no saved versions")
        selector = parsed.selector or "latest"
        if selector == "latest":
            version = versions[-1]
        elif selector.isdigit():
            version = int(selector)
            if version not in versions:
                raise RefError(f"{parsed.target!r} has no version {version}; versions: {versions}")
        else:
            aliases = self._aliases(model_dir)
            if selector not in aliases or aliases[selector] not in versions:
                raise RefError(f"{parsed.target!r} has no alias {selector!r}; aliases: {sorted(aliases)} and 'latest'")
            version = aliases[selector]
        return self._entry(parsed.target, model_dir, version, builtin)

    def locate(self, ref: str | Path | Ref) -> Entry:
        """The entry a local reference names: a version in this registry, or a folder path.

        The Hub form needs a pull first, which is :mod:`zoo.hub`'s job above this module (:func:`zoo.locate`
        does both). A pickle file, or a folder holding only pickle weights, is refused with the way to
        convert it.

        Raises:
            RefError: for a Hub reference, a missing folder, a file, or a folder that is not an entry.
            UnsafeWeightsError: for pickle weights.
        """
        parsed = ref if isinstance(ref, Ref) else parse_ref(ref)
        if parsed.kind == "name":
            return self.resolve(parsed)
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

    def names(self) -> list[str]:
        """Every model name, user and built-in."""
        names: set[str] = set()
        for root in (self.home, *self.readonly_roots):
            models = root / "models"
            if models.is_dir():
                names.update(p.name for p in models.iterdir() if p.is_dir() and NAME_RE.match(p.name))
        return sorted(names)

    def entries(self) -> list[Entry]:
        """Every version of every model, in name then version order."""
        entries = []
        for name in self.names():
            for model_dir, builtin in self._model_dirs(name)[:1]:
                entries += [self._entry(name, model_dir, v, builtin) for v in self._versions(model_dir)]
        return entries

    # -- writing -----------------------------------------------------------------------------------
    def _writable_model_dir(self, name: str) -> Path:
        """The user's folder for ``name``; a name only a built-in holds is refused (see the module docstring)."""
        if not NAME_RE.match(name):
            raise RefError(f"{name!r} is not a valid model name (letters, digits, '.', '_', '-')")
        model_dir = self.home / "models" / name
        owned = model_dir.is_dir() and bool(self._versions(model_dir))
        if not owned and any((root / "models" / name).is_dir() for root in self.readonly_roots):
            raise RefError(f"{name!r} is a built-in model; save under another name")
        model_dir.mkdir(parents=True, exist_ok=True)
        return model_dir

    def save_files(self, name: str, files: Mapping[str, bytes], aliases: tuple[str, ...] = ()) -> Entry:
        """Write a new immutable version from file contents; returns its entry.

        ``files`` must hold ``config.json`` and at least one ``.safetensors`` file; the manifest is
        computed here.
        """
        if CONFIG not in files:
            raise ConfigError("an entry needs a config.json")
        for alias in aliases:
            if alias == "latest" or not ALIAS_RE.match(alias):
                raise RefError(f"invalid alias {alias!r}: start with a letter; 'latest' is implied")
        model_dir = self._writable_model_dir(name)
        self._remove_stale_tmp(model_dir)
        tmp = model_dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            for filename, data in files.items():
                target = tmp / filename
                target.parent.mkdir(parents=True, exist_ok=True)
                write_file_durably(target, data)
            write_file_durably(tmp / MANIFEST, json.dumps(build_manifest(tmp), indent=2).encode())
            for path in tmp.rglob("*"):
                if path.is_file():
                    path.chmod(0o444)  # versions are immutable; a stray write fails loudly
            _fsync_dir(tmp)
            version = self._publish(tmp, model_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for alias in aliases:
            self._set_alias(model_dir, alias, version)
        log.info("saved %s@%d to %s", name, version, model_dir / str(version))
        return self._entry(name, model_dir, version, False)

    def save_entry(self, name: str, config: EncoderConfig, files: Mapping[str, bytes], *,
                   figures: Mapping[str, str] | None = None, aliases: tuple[str, ...] = ()) -> Entry:
        """Save weight (and other) files with ``config.json`` and a model card rendered from the config.

        Args:
            name: The registry name; saving it again makes the next version.
            config: Written as ``config.json`` and rendered into ``README.md``.
            files: Weights and any other files (plots, tokenizer, ONNX graphs); covered by the manifest.
            figures: Captions → file names among ``files``, shown in the model card.
            aliases: Aliases to point at the new version.
        """
        all_files = {**files, CONFIG: config_bytes(config), CARD: render_card(name, config, figures).encode()}
        return self.save_files(name, all_files, aliases)

    @staticmethod
    def _publish(tmp: Path, model_dir: Path) -> int:
        """Rename the finished folder to the next free version number (atomic; races retry)."""
        existing = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()]
        version = max(existing, default=0) + 1
        while True:
            try:
                os.rename(tmp, model_dir / str(version))
                _fsync_dir(model_dir)
                return version
            except OSError:
                if not (model_dir / str(version)).exists():
                    raise
                version += 1

    @staticmethod
    def _remove_stale_tmp(model_dir: Path) -> None:
        """Leftovers of killed saves are removed once they are old enough not to be in progress."""
        now = time.time()
        for path in model_dir.glob(".tmp-*"):
            if now - path.stat().st_mtime > STALE_TMP_SECONDS:
                shutil.rmtree(path, ignore_errors=True)

    def _set_alias(self, model_dir: Path, alias: str, version: int) -> None:
        aliases = self._aliases(model_dir)
        aliases[alias] = version
        _write_json_atomic(model_dir / ALIASES, aliases)

    def set_alias(self, ref: str, alias: str) -> Entry:
        """Point ``alias`` at the version ``ref`` names."""
        if alias == "latest" or not ALIAS_RE.match(alias):
            raise RefError(f"invalid alias {alias!r}: start with a letter; 'latest' is implied")
        entry = self.resolve(ref)
        if entry.builtin:
            raise RefError(f"{entry.ref} is built in and read-only")
        self._set_alias(entry.path.parent, alias, entry.version or 0)
        return self.resolve(f"{entry.name}@{entry.version}")

    def delete(self, ref: str) -> list[Entry]:
        """Delete one version (``name@v``/``name@alias``) or, for a bare name, the whole model."""
        parsed = parse_ref(ref)
        if parsed.kind != "name":
            raise RefError(f"only registry entries can be deleted, not {ref!r}")
        entry = self.resolve(parsed)
        if entry.builtin:
            raise RefError(f"{entry.name!r} is built in and read-only")
        model_dir = entry.path.parent
        victims = [entry] if parsed.selector else [self._entry(entry.name, model_dir, v, False)
                                                  for v in self._versions(model_dir)]
        for victim in victims:
            trash = model_dir / f".tmp-deleting-{uuid.uuid4().hex}"
            os.rename(victim.path, trash)  # atomic disappearance, then the slow part
            shutil.rmtree(trash, ignore_errors=True)
        remaining = self._versions(model_dir)
        if not remaining:
            shutil.rmtree(model_dir, ignore_errors=True)
        else:
            aliases = {a: v for a, v in self._aliases(model_dir).items() if v in remaining}
            _write_json_atomic(model_dir / ALIASES, aliases)
        return victims
