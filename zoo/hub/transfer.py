"""Push registry entries to Hugging Face Hub model repos, and pull repos back as registry entries.

Everything goes through ``huggingface_hub``, so its cache (``HF_HOME``/``HF_HUB_CACHE``), offline mode
(``HF_HUB_OFFLINE=1``), tokens (``token=``, ``HF_TOKEN``, ``hf auth login``) and mirrors behave as users
expect. The endpoint is ``endpoint=`` or ``$SSLZOO_HF_ENDPOINT``, read at every call (huggingface_hub
reads ``HF_ENDPOINT`` once, at import).

A pull:

1. resolves the revision to a commit sha and lists the repo's files (from the cache when offline);
2. picks the repo's format from the files it declares (:mod:`zoo.hub.formats`: an sslzoo entry, a timm
   or an open_clip repo, or a transformers repo sslzoo converts) and downloads only the files that format
   needs — safetensors, JSON, ONNX, Markdown, inert images and ``.npz`` arrays (read back without
   unpickling before anything is registered); a repo that offers only pickle weights is refused before
   anything big is downloaded;
3. checks every downloaded file's size and hash against the Hub's own metadata (the LFS sha256 or git
   blob id) and, for sslzoo entries, against ``manifest.json``; a file that fails is removed from the
   cache so that the next pull downloads it again, and nothing is registered;
4. registers the entry as ``<org>--<repo>`` with the commit recorded in ``config.hub``; pulling a
   commit that is already registered returns that entry.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    get_cached_repo_tree,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    CachedRepoTreeNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import sha as hf_sha

from zoo.config import HubSource
from zoo.errors import ConfigError, ManifestError, RefError, SslzooError
from zoo.hub import formats as hub_formats
from zoo.hub.catalogue import CatalogueEntry, by_repo, find
from zoo.manifest import MANIFEST, sha256_file
from zoo.refs import HUB_PREFIX, parse_ref
from zoo.registry import Entry, Registry

log = logging.getLogger(__name__)
ENDPOINT_ENV = "SSLZOO_HF_ENDPOINT"
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubError(SslzooError):
    """The Hub could not be reached or refused a request (network, server error, offline cache miss)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repo at a commit, with the Hub's integrity metadata (sha256 for LFS files)."""

    path: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class Listing:
    """A revision resolved to its commit, and the files there."""

    repo_id: str
    revision: str
    commit: str
    files: dict[str, RemoteFile]
    offline: bool = False


@dataclass(frozen=True)
class PushResult:
    """What a push made: the commit, and where it is."""

    repo_id: str
    revision: str
    commit: str
    url: str
    embedding_space: str


def resolve_endpoint(endpoint: str | None = None) -> str | None:
    """``endpoint``, else ``$SSLZOO_HF_ENDPOINT``, else None (huggingface_hub's own default)."""
    return (endpoint or os.environ.get(ENDPOINT_ENV) or "").rstrip("/") or None


def entry_name(repo_id: str) -> str:
    """The registry name of a pulled repo: ``org/repo`` → ``org--repo``."""
    return repo_id.replace("/", "--")


def parse_target(ref_or_repo: str, revision: str | None = None) -> tuple[str, str | None]:
    """``hf-hub:org/repo@rev``, ``org/repo@rev`` or ``org/repo`` (+ ``revision=``) → ``(repo_id, revision)``."""
    text = ref_or_repo.strip().removeprefix(HUB_PREFIX)
    repo_id, _, inline = text.partition("@")
    if not _REPO_RE.match(repo_id):
        raise RefError(f"{ref_or_repo!r} is not a Hub repository; write 'org/repo' or 'org/repo@revision'")
    if "@" in text and not inline:
        raise RefError(f"{ref_or_repo!r}: nothing after '@'; write 'org/repo@revision'")
    if inline and revision and inline != revision:
        raise RefError(f"{ref_or_repo!r} names revision {inline!r} but revision={revision!r} was given too")
    return repo_id, inline or revision or None


# -- errors ----------------------------------------------------------------------------------------
def _refs_text(api: HfApi, repo_id: str) -> str | None:
    """``branches [...], tags [...]`` of a repo, or None when the repo cannot be listed."""
    try:
        refs = api.list_repo_refs(repo_id)
    except Exception:  # only used to word an error better
        return None
    return f"branches {sorted(b.name for b in refs.branches)}, tags {sorted(t.name for t in refs.tags)}"


@contextmanager
def _hub_errors(api: HfApi, repo_id: str, revision: str | None, action: str) -> Iterator[None]:
    """Turn huggingface_hub and transport errors into one clear sslzoo error each."""
    where = api.endpoint
    try:
        yield
    except SslzooError:
        raise
    except GatedRepoError as exc:
        raise RefError(f"{repo_id} is gated: accept its conditions on {where}/{repo_id} and pass a token") from exc
    except (RevisionNotFoundError, RepositoryNotFoundError) as exc:
        refs = _refs_text(api, repo_id)
        if refs is not None and revision:
            raise RefError(f"{repo_id} at {where} has no revision {revision!r}; it has {refs}") from exc
        raise RefError(f"no Hub repository {repo_id!r} at {where}, or it is private (pass a token, set HF_TOKEN "
                       "or run `hf auth login`)") from exc
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
        raise HubError(f"{action} {repo_id}: offline and not in the huggingface_hub cache "
                       f"({hf_constants.HF_HUB_CACHE}); pull it once online: {exc}") from exc
    except HfHubHTTPError as exc:
        raise HubError(f"{action} {repo_id} at {where} failed: {exc}".splitlines()[0]
                       + "; nothing was registered — run it again") from exc
    except Exception as exc:  # transport errors (connection refused or cut) come from the HTTP client
        raise HubError(f"{action} {repo_id} at {where} failed: {type(exc).__name__}: {exc}; nothing was "
                       "registered and no partial file is kept — run it again") from exc


# -- listing and downloading -----------------------------------------------------------------------
def _storage(repo_id: str, cache_dir: str | Path | None) -> Path:
    return Path(cache_dir or hf_constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")


def list_remote(api: HfApi, repo_id: str, revision: str | None, cache_dir: str | Path | None = None) -> Listing:
    """Resolve ``revision`` to a commit and list its files: from the Hub, or from the cache when offline."""
    revision = revision or hf_constants.DEFAULT_REVISION
    if not hf_constants.HF_HUB_OFFLINE:
        info = api.model_info(repo_id, revision=revision)
        if not info.sha:
            raise HubError(f"{repo_id}@{revision}: the server did not report a commit sha")
        files = {f.path: RemoteFile(f.path, f.size, f.lfs.sha256 if f.lfs else None)
                 for f in api.list_repo_tree(repo_id, revision=info.sha, recursive=True) if isinstance(f, RepoFile)}
        return Listing(repo_id, revision, info.sha, files)
    commit = revision if _COMMIT_RE.match(revision) else None
    ref = _storage(repo_id, cache_dir) / "refs" / revision
    if commit is None and ref.is_file():
        commit = ref.read_text().strip()
    if commit is None:
        raise HubError(f"offline (HF_HUB_OFFLINE=1) and {repo_id}@{revision} was never pulled into "
                       f"{_storage(repo_id, cache_dir)}; pull it once online")
    try:
        cached = get_cached_repo_tree(repo_id, revision=commit, cache_dir=cache_dir)
        files = {f.path: RemoteFile(f.path, f.size) for f in cached}
    except CachedRepoTreeNotFoundError:
        snapshot = _storage(repo_id, cache_dir) / "snapshots" / commit
        files = {p.relative_to(snapshot).as_posix(): RemoteFile(p.relative_to(snapshot).as_posix())
                 for p in snapshot.rglob("*") if p.is_file()}
    return Listing(repo_id, revision, commit, files, offline=True)


def read_json_file(api: HfApi, listing: Listing, filename: str, cache_dir: str | Path | None) -> Any:
    """One small JSON file of the listed commit, through the cache."""
    path = hf_hub_download(listing.repo_id, filename, revision=listing.commit, endpoint=api.endpoint,
                           token=api.token, cache_dir=cache_dir)
    try:
        return json.loads(Path(path).read_text())
    except ValueError as exc:
        raise ConfigError(f"{listing.repo_id}: {filename} is not valid JSON: {exc}") from exc


def download(api: HfApi, listing: Listing, filenames: list[str], cache_dir: str | Path | None) -> Path:
    """Download exactly ``filenames`` at the listed commit; returns the snapshot folder."""
    folder = Path(snapshot_download(listing.repo_id, revision=listing.revision, endpoint=api.endpoint,
                                    token=api.token, cache_dir=cache_dir,
                                    allow_patterns=[glob.escape(name) for name in filenames]))
    if folder.name != listing.commit:
        raise HubError(f"{listing.repo_id}@{listing.revision} moved from {listing.commit[:12]} to {folder.name[:12]} "
                       "during the pull; run it again")
    missing = [name for name in filenames if not (folder / name).is_file()]
    if missing:
        raise HubError(f"{listing.repo_id}@{listing.commit[:12]}: {missing} did not download")
    return folder


def _evict(path: Path) -> None:
    """Remove a cached file and the blob behind it, so the next pull downloads it afresh."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def check_files(folder: Path, filenames: list[str], listing: Listing) -> None:
    """Sizes and hashes of downloaded files against the Hub's metadata; a bad file is evicted.

    The expected sha256 is the Hub's LFS oid from the tree listing, or the content address the
    huggingface_hub cache stores the blob under (the server's ``X-Linked-Etag``: sha256 for LFS files,
    the git blob id for small files).
    """
    for name in filenames:
        path = folder / name
        remote = listing.files.get(name, RemoteFile(name))
        problem = None
        if remote.size is not None and path.stat().st_size != remote.size:
            problem = f"has {path.stat().st_size} bytes, the Hub says {remote.size}"
        else:
            blob = path.resolve().name
            expected = remote.sha256 or (blob if _SHA256_RE.match(blob) else None)
            if expected is not None and sha256_file(path) != expected:
                problem = f"does not match its sha256 {expected[:12]}… on the Hub"
            elif expected is None and _COMMIT_RE.match(blob) and hf_sha.git_hash(path.read_bytes()) != blob:
                problem = f"does not match its git blob id {blob[:12]}… on the Hub"
        if problem:
            _evict(path)
            raise ManifestError(f"{listing.repo_id}@{listing.commit[:12]}: downloaded {name} {problem}: the download "
                                "was corrupt or partial. It was removed from the cache and nothing was registered; "
                                "pull again to download it afresh")


# -- pull ------------------------------------------------------------------------------------------
def _registered(registry: Registry, repo_id: str, commit: str) -> Entry | None:
    for entry in registry.entries():
        if entry.name == entry_name(repo_id):
            hub = entry.read_config().hub
            if hub is not None and hub.repo_id == repo_id and hub.commit == commit:
                entry.verify()
                return entry
    return None


def pull(ref_or_repo: str, *, revision: str | None = None, endpoint: str | None = None,
         registry: Registry | None = None, token: str | None = None, cache_dir: str | Path | None = None,
         format: str | None = None) -> Entry:
    """Download a Hub repo through the huggingface_hub cache, verify it, and register it as an entry.

    Args:
        ref_or_repo: ``org/repo``, ``org/repo@revision``, ``hf-hub:org/repo[@revision]``, or the name of a
            :mod:`zoo.hub.catalogue` checkpoint.
        revision: A branch, tag or commit sha (``main`` by default); pin a commit for reproducibility.
        endpoint: The Hub's URL; ``$SSLZOO_HF_ENDPOINT`` or huggingface_hub's default when None.
        registry: Where to register; the one under ``$SSLZOO_HOME`` by default.
        token: A Hub token for private repos; huggingface_hub's own lookup (``HF_TOKEN``...) when None.
        cache_dir: The huggingface_hub cache; ``$HF_HUB_CACHE`` by default.
        format: ``sslzoo``, ``timm``, ``open_clip`` or ``transformers`` to choose among several a repo offers.

    Returns:
        The registered entry; its config's ``hub`` records repo_id, revision, commit and format.
    """
    repo_id, revision, known = _target(ref_or_repo, revision)
    if known is not None and format is None and known.format not in hub_formats.formats():
        raise ConfigError(f"{known.name} ({known.repo_id}) is a {known.format} checkpoint, which sslzoo cannot load "
                          f"yet: {known.notes}")
    registry = registry or Registry()
    if revision is not None and _COMMIT_RE.match(revision):
        pinned = _registered(registry, repo_id, revision)  # a pinned commit never changes: no request needed
        if pinned is not None:
            return pinned
    api = HfApi(endpoint=resolve_endpoint(endpoint), token=token, library_name="sslzoo")
    with _hub_errors(api, repo_id, revision, "pulling"):
        listing = list_remote(api, repo_id, revision, cache_dir)
    existing = _registered(registry, repo_id, listing.commit)
    if existing is not None:
        log.info("%s@%s is already registered as %s", repo_id, listing.commit[:12], existing.ref)
        return existing

    def read_json(name: str) -> Any:
        return read_json_file(api, listing, name, cache_dir)

    with _hub_errors(api, repo_id, revision, "pulling"):
        chosen, wanted = hub_formats.choose(set(listing.files), read_json, format or (known.format if known else None),
                                            repo_id)
        folder = download(api, listing, wanted, cache_dir)
    check_files(folder, wanted, listing)
    hub_info = HubSource(repo_id=repo_id, revision=listing.revision, commit=listing.commit, format=chosen.name,
                         endpoint=api.endpoint)
    context = hub_formats.Context(repo_id, listing.commit, folder, hub_info, known)
    entry = chosen.register(context, entry_name(repo_id), registry)
    log.info("pulled %s@%s (%s) as %s", repo_id, listing.commit[:12], chosen.name, entry.ref)
    return entry


def _target(ref_or_repo: str, revision: str | None) -> tuple[str, str | None, CatalogueEntry | None]:
    """Repo, revision and catalogue entry of what a user wrote (a catalogue name stands for its repo)."""
    name, at, inline = ref_or_repo.strip().removeprefix(HUB_PREFIX).partition("@")
    known = find(name) if "/" not in name else None
    repo_id, revision = parse_target(f"{known.repo_id}{at}{inline}" if known else ref_or_repo, revision)
    return repo_id, revision or (known.revision if known else None), known or by_repo(repo_id)


# -- push ------------------------------------------------------------------------------------------
def _remote_files(api: HfApi, repo_id: str, branch: str) -> list[str]:
    """The files on a branch; none when the repo has no commit yet."""
    try:
        return api.list_repo_files(repo_id, revision=branch)
    except RevisionNotFoundError:
        return []


def push(ref: str | Path, repo_id: str, *, revision: str | None = None, private: bool = False,
         endpoint: str | None = None, token: str | None = None, tag: str | None = None,
         commit_message: str | None = None, registry: Registry | None = None) -> PushResult:
    """Upload a registry entry as a Hub model repo; returns the new commit.

    The files are exactly the entry's (weights, ``config.json``, ``README.md`` whose front matter the Hub
    indexes, tokenizer, ONNX files, extras) plus ``manifest.json``, after checking them against it:
    a modified entry is never published. Files left in the repo by an earlier push that this entry does
    not have are deleted in the same commit, so the repo always holds one consistent entry.

    Args:
        ref: A registry reference (``name``, ``name@3``, ``name@alias``), an entry folder, or a Hub reference
            (pulled first).
        repo_id: ``org/repo``; created if it does not exist.
        revision: The branch to commit to (``main`` by default); created from ``main`` if missing.
        private: Create the repo private (ignored when it exists).
        endpoint: The Hub's URL; ``$SSLZOO_HF_ENDPOINT`` or huggingface_hub's default when None.
        token: A write token; huggingface_hub's own lookup when None.
        tag: Also tag the new commit (``v1.0``), the way to pin a release.
        commit_message: Defaults to ``Upload <entry ref> with sslzoo``.
        registry: Defaults to the one under ``$SSLZOO_HOME``.
    """
    repo_id, inline = parse_target(repo_id, revision)
    branch = inline or hf_constants.DEFAULT_REVISION
    parsed = parse_ref(ref)
    entry = pull(str(parsed), registry=registry) if parsed.kind == "hub" else (registry or Registry()).locate(parsed)
    manifest = entry.verify()
    names = sorted([*manifest["files"], MANIFEST])
    api = HfApi(endpoint=resolve_endpoint(endpoint), token=token, library_name="sslzoo")
    with _hub_errors(api, repo_id, None, "pushing to"):
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if branch != hf_constants.DEFAULT_REVISION:
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        stale = [p for p in _remote_files(api, repo_id, branch) if p not in names and p != ".gitattributes"]
        operations: list[CommitOperationAdd | CommitOperationDelete] = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(entry.path / name)) for name in names]
        operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
        info = api.create_commit(repo_id, operations, revision=branch,
                                 commit_message=commit_message or f"Upload {entry.ref} with sslzoo")
        if tag:
            api.create_tag(repo_id, tag=tag, revision=info.oid)
    log.info("pushed %s to %s@%s: commit %s", entry.ref, repo_id, branch, info.oid)
    return PushResult(repo_id, branch, info.oid, info.commit_url, manifest["embedding_space"])

