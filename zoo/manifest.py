"""``manifest.json``: the sha256 and size of every file in an entry, checked on every load.

The embedding-space id comes from the weights' hashes, so two entries share a space exactly when
their weights are byte-identical: vectors from different weights can never be mixed by accident.
Weights an entry references in a package instead of carrying (``config.external_weights``,
see :mod:`zoo.package_weights`) count by their recorded sha256, so the id still covers every tensor.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from zoo.errors import ManifestError

MANIFEST = "manifest.json"
WEIGHT_SUFFIXES = (".safetensors",)
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def embedding_space_id(file_hashes: dict[str, str], external: dict[str, str] | None = None) -> str:
    """``es-`` + 16 hex digits over the sorted weight-file hashes (both towers for CLIP).

    ``external`` maps ``target#package/file`` to the sha256 of referenced package files; entries without
    references get the same id as before references existed.
    """
    weights = sorted((name, sha) for name, sha in file_hashes.items() if name.endswith(WEIGHT_SUFFIXES))
    if not weights:
        raise ManifestError("an entry needs at least one .safetensors file to have an embedding space")
    joined = "".join(f"{name}:{sha};" for name, sha in [*weights, *sorted((external or {}).items())])
    return "es-" + hashlib.sha256(joined.encode()).hexdigest()[:16]


def _entry_config(folder: Path) -> dict[str, Any]:
    """The entry's ``config.json`` as a mapping ({} when there is none), read once per manifest."""
    path = folder / "config.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise ManifestError(f"{path}: unreadable JSON: {exc}") from exc
    return raw if isinstance(raw, dict) else {}


#: Poolings with no weights of their own that read a backbone out differently from the poolings older entries
#: used: tagged into the embedding-space id.
TAGGED_READOUTS = ("flatten", "cls_mean")


def readout_tag(config: dict[str, Any]) -> dict[str, str]:
    """``{"pooling": "flatten"}`` (or ``cls_mean``) when the entry reads its weights out that way, else nothing.

    Pooling has no weights, so the same weights read out with ``avg`` and with ``flatten`` (``cls`` and
    ``cls_mean``) give two different spaces that the weight hashes alone would not tell apart. Other
    poolings keep the ids they always had.
    """
    pooling = config.get("pooling")
    return {"pooling": pooling} if pooling in TAGGED_READOUTS else {}


def external_hashes(folder: Path, config: dict[str, Any]) -> dict[str, str]:
    """``target#package/file`` → sha256 of the package files the entry's config says it references."""
    try:
        # config_version 2 keeps the records at the top level, version 1 in ``extra``: the same records.
        records = config.get("external_weights") or (config.get("extra") or {}).get("external_weights") or []
        return {f"{r['target']}#{r['package']}/{r['file']}": str(r["sha256"]) for r in records}
    except (KeyError, TypeError, AttributeError) as exc:
        raise ManifestError(f"{folder / 'config.json'}: unreadable external_weights: {exc}") from exc


def build_manifest(folder: Path) -> dict[str, Any]:
    """Hash every regular file under ``folder`` except the manifest itself (plus referenced package files)."""
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[path.relative_to(folder).as_posix()] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    hashes = {name: info["sha256"] for name, info in files.items()}
    config = _entry_config(folder)
    external = external_hashes(folder, config)
    space = embedding_space_id(hashes, {**external, **readout_tag(config)})
    manifest: dict[str, Any] = {"format": 1, "files": files, "embedding_space": space}
    if external:
        manifest["external"] = external
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest as written; a missing or unreadable one is a ManifestError."""
    path = folder / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{path} is missing: this folder is not a registry entry (save it with zoo.save)")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path} is not a valid manifest: {exc}") from exc
    if not isinstance(files, dict):
        raise ManifestError(f"{path}: 'files' must be an object")
    return manifest


def verify_manifest(folder: Path, *, hash_files: bool = True) -> dict[str, Any]:
    """Check sizes and sha256 of every listed file; name the first file that differs.

    Files present but not listed are refused too when they are weights, so nothing unverified is
    ever loaded.
    """
    manifest = read_manifest(folder)
    for name, info in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise ManifestError(f"{path} is listed in the manifest but missing")
        if path.stat().st_size != info["size"]:
            raise ManifestError(f"{path} has size {path.stat().st_size}, manifest says {info['size']}")
        if hash_files and sha256_file(path) != info["sha256"]:
            raise ManifestError(f"{path} does not match its sha256 in {MANIFEST}: the file was modified or corrupted")
    unlisted = [p.name for p in folder.iterdir() if p.suffix in (*WEIGHT_SUFFIXES, ".onnx")
                and p.name not in manifest["files"]]
    if unlisted:
        raise ManifestError(f"{folder}: weight files not in the manifest: {unlisted}")
    return manifest
