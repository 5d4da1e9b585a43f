"""A small Hugging Face Hub-compatible server for the tests, on loopback, backed by real git repositories.

It implements the HTTP endpoints ``huggingface_hub`` 2.x calls, and nothing else:

* writes: ``POST /api/repos/create``, ``/api/validate-yaml``, ``/api/models/{repo}/preupload/{rev}``,
  ``/api/models/{repo}/commit/{rev}`` (NDJSON, files inline as base64 — preupload answers ``regular``
  for every file, so no LFS or Xet transfer is needed), ``/branch/{name}`` and ``/tag/{rev}``;
* reads: ``/api/models/{repo}/revision/{rev}``, ``/tree/{rev}``, ``/refs`` and ``HEAD``/``GET``
  ``/{repo}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``,
  ``X-Linked-Size`` and byte ranges, the headers the real Hub sends.

Each repository is a git repository at ``<root>/models/<org>/<name>`` whose weight files are stored as
git-LFS pointers with the objects under ``.git/lfs/objects`` — the layout ``olah`` serves as local
mirrors, so what this server writes, olah serves independently. Writes need ``Authorization: Bearer
<token>``; private repositories need it for reads too.

``POST /_test/faults`` queues faults for the next ``GET`` of a file (``drop``: send half of the body,
then cut the connection; ``corrupt``: flip bytes, same length; ``error``: answer 503), so the tests can
show what a client does with a broken download.

Run: ``python tests/hub/hubserver.py --root DIR --token T`` prints ``PORT <n>`` once it listens.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import socket
import sys
import threading
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import git
import uvicorn
import yaml
from git.objects.fun import tree_to_stream
from gitdb import IStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

LFS_SUFFIXES = (".safetensors", ".onnx", ".bin", ".pt", ".pth", ".ckpt", ".pkl")
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()
ACTOR = git.Actor("hub test server", "hub@localhost")
TREE_MODE, BLOB_MODE = 0o040000, 0o100644
LOCK = threading.Lock()


def error(status: int, code: str, message: str) -> Response:
    """An error the way the Hub sends it: ``X-Error-Code`` picks huggingface_hub's exception class."""
    return JSONResponse({"error": message}, status_code=status,
                        headers={"X-Error-Code": code, "X-Error-Message": message})


class Hub:
    """The repositories under one root, plus the queued faults."""

    def __init__(self, root: Path, token: str) -> None:
        self.root = root
        self.token = token
        self.faults: dict[str, list[str]] = defaultdict(list)

    # -- repositories ------------------------------------------------------------------------------
    def path(self, repo_id: str) -> Path:
        return self.root / "models" / repo_id

    def repo(self, repo_id: str) -> git.Repo | None:
        path = self.path(repo_id)
        return git.Repo(path) if (path / ".git").is_dir() else None

    def is_private(self, repo_id: str) -> bool:
        return (self.path(repo_id) / ".git" / "hub-private").exists()

    def authorised(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def readable(self, request: Request, repo_id: str) -> tuple[git.Repo | None, Response | None]:
        repo = self.repo(repo_id)
        if repo is None or (self.is_private(repo_id) and not self.authorised(request)):
            return None, error(401 if repo is not None else 404, "RepoNotFound", f"Repository {repo_id} not found")
        return repo, None

    @staticmethod
    def commit(repo: git.Repo, revision: str) -> git.Commit | None:
        try:
            return repo.commit(revision)
        except (git.BadName, ValueError, git.GitCommandError):
            return None

    # -- objects -----------------------------------------------------------------------------------
    @staticmethod
    def lfs_object(repo: git.Repo, oid: str) -> Path:
        return Path(repo.working_dir) / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid

    def store_file(self, repo: git.Repo, path: str, content: bytes | Path) -> bytes:
        """Store a file's content: weights as an LFS object plus pointer blob, the rest as a plain blob."""
        if path.endswith(LFS_SUFFIXES):
            digest = hashlib.sha256()
            with io.BytesIO(content) if isinstance(content, bytes) else open(content, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
            oid = digest.hexdigest()
            target = self.lfs_object(repo, oid)
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            elif not target.exists():
                shutil.copyfile(content, target)
            size = target.stat().st_size
            content = f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()
        data = content if isinstance(content, bytes) else content.read_bytes()
        return bytes(repo.odb.store(IStream("blob", len(data), io.BytesIO(data))).binsha)

    def write_tree(self, repo: git.Repo, files: dict[str, bytes]) -> bytes:
        """Write nested git trees for ``path → blob sha``; entries sorted the way git sorts them."""
        entries: list[tuple[bytes, int, str]] = []
        folders: dict[str, dict[str, bytes]] = defaultdict(dict)
        for path, sha in files.items():
            head, _, rest = path.partition("/")
            if rest:
                folders[head][rest] = sha
            else:
                entries.append((sha, BLOB_MODE, head))
        entries += [(self.write_tree(repo, sub), TREE_MODE, name) for name, sub in folders.items()]
        entries.sort(key=lambda e: e[2] + ("/" if e[1] == TREE_MODE else ""))
        buffer = io.BytesIO()
        tree_to_stream(entries, buffer.write)
        data = buffer.getvalue()
        return bytes(repo.odb.store(IStream("tree", len(data), io.BytesIO(data))).binsha)

    def new_commit(self, repo: git.Repo, branch: str, changes: dict[str, bytes | Path | None], message: str) -> str:
        """Apply additions (bytes) and deletions (None) on top of ``branch`` and move the branch."""
        parent = repo.heads[branch].commit if branch in repo.heads else None
        files = {b.path: b.binsha for b in parent.tree.traverse() if b.type == "blob"} if parent else {}
        for path, data in changes.items():
            if data is None:
                files = {p: s for p, s in files.items() if p != path and not p.startswith(path.rstrip("/") + "/")}
            else:
                files[path] = self.store_file(repo, path, data)
        tree = git.Tree(repo, self.write_tree(repo, files))
        commit = git.Commit.create_from_tree(repo, tree, message, parent_commits=[parent] if parent else [],
                                             head=False, author=ACTOR, committer=ACTOR)
        if branch in repo.heads:
            repo.heads[branch].commit = commit
        else:
            repo.create_head(branch, commit)
        return str(commit.hexsha)

    def file_info(self, repo: git.Repo, blob: git.Blob) -> dict[str, Any]:
        """Size, oid and LFS metadata of one blob, as in ``/tree`` listings."""
        data = blob.data_stream.read()
        info: dict[str, Any] = {"type": "file", "oid": blob.hexsha, "size": blob.size, "path": blob.path}
        pointer = parse_pointer(data)
        if pointer is not None:
            info["lfs"] = {"oid": pointer[0], "size": pointer[1], "pointerSize": blob.size}
            info["size"] = pointer[1]
        return info


def seed_repo(root: Path, repo_id: str, files: dict[str, bytes | Path], *, message: str = "add files",
              branch: str = "main", private: bool = False) -> str:
    """Write a commit straight into a repo under ``root`` (created if missing); returns the commit sha.

    For repos the tests set up rather than push (a pickle-only repo, a 600 MB open_clip checkpoint):
    the same git layout the server writes and serves, without base64-encoding big files over HTTP.
    """
    hub = Hub(root, token="")
    with LOCK:
        repo = hub.repo(repo_id)
        if repo is None:
            hub.path(repo_id).mkdir(parents=True)
            repo = git.Repo.init(hub.path(repo_id), initial_branch="main")
            if private:
                (hub.path(repo_id) / ".git" / "hub-private").touch()
            hub.new_commit(repo, "main", {".gitattributes": GITATTRIBUTES}, "initial commit")
        if branch not in repo.heads:
            repo.create_head(branch, repo.heads["main"].commit)
        return hub.new_commit(repo, branch, dict(files), message)


def parse_pointer(data: bytes) -> tuple[str, int] | None:
    """``(sha256, size)`` of a git-LFS pointer, or None for a plain file."""
    if not data.startswith(b"version https://git-lfs.github.com/spec/v1\n") or len(data) > 200:
        return None
    fields = dict(line.split(" ", 1) for line in data.decode().splitlines() if " " in line)
    return fields["oid"].removeprefix("sha256:"), int(fields["size"])


HUB: Hub


def repo_id(request: Request) -> str:
    return f"{request.path_params['org']}/{request.path_params['name']}"


# -- write endpoints -------------------------------------------------------------------------------
async def create_repo(request: Request) -> Response:
    if not HUB.authorised(request):
        return error(401, "Unauthorized", "Invalid credentials in Authorization header")
    body = await request.json()
    rid = f"{body.get('organization')}/{body['name']}"
    url = str(request.base_url).rstrip("/") + f"/{rid}"
    with LOCK:
        if HUB.repo(rid) is not None:
            return JSONResponse({"error": "You already created this model repo", "url": url}, status_code=409)
        path = HUB.path(rid)
        path.mkdir(parents=True)
        repo = git.Repo.init(path, initial_branch="main")
        if body.get("private") or body.get("visibility") == "private":
            (path / ".git" / "hub-private").touch()
        HUB.new_commit(repo, "main", {".gitattributes": GITATTRIBUTES}, "initial commit")
    return JSONResponse({"url": url, "name": rid, "id": rid})


async def validate_yaml(request: Request) -> Response:
    content = (await request.json()).get("content", "")
    if content.startswith("---"):
        try:
            meta = yaml.safe_load(content.split("---")[1])
        except yaml.YAMLError as exc:
            return JSONResponse({"errors": [{"message": str(exc)}], "warnings": []}, status_code=400)
        if not isinstance(meta, dict):
            return JSONResponse({"errors": [{"message": "metadata must be a mapping"}], "warnings": []},
                                status_code=400)
    return JSONResponse({"errors": [], "warnings": []})


async def preupload(request: Request) -> Response:
    if not HUB.authorised(request):
        return error(401, "Unauthorized", "Invalid credentials in Authorization header")
    if HUB.repo(repo_id(request)) is None:
        return error(404, "RepoNotFound", f"Repository {repo_id(request)} not found")
    files = (await request.json())["files"]
    return JSONResponse({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                                   for f in files]})


async def commit(request: Request) -> Response:
    rid = repo_id(request)
    if not HUB.authorised(request):
        return error(401, "Unauthorized", "Invalid credentials in Authorization header")
    repo = HUB.repo(rid)
    if repo is None:
        return error(404, "RepoNotFound", f"Repository {rid} not found")
    branch = request.path_params["revision"]
    if branch not in repo.heads:
        return error(404, "RevisionNotFound", f"Invalid rev id: {branch}")
    header: dict[str, Any] = {}
    changes: dict[str, bytes | None] = {}
    for line in (await request.body()).splitlines():
        item = json.loads(line)
        key, value = item["key"], item["value"]
        if key == "header":
            header = value
        elif key == "file":
            changes[value["path"]] = base64.b64decode(value["content"])
        elif key in ("deletedFile", "deletedFolder"):
            changes[value["path"]] = None
        else:
            return error(400, "BadRequest", f"this test server does not take {key!r} operations")
    with LOCK:
        parent = header.get("parentCommit")
        if parent and repo.heads[branch].commit.hexsha != parent:
            return error(412, "PreconditionFailed", "parent commit is not the head of the branch")
        message = header.get("summary", "") + ("\n\n" + header["description"] if header.get("description") else "")
        sha = HUB.new_commit(repo, branch, changes, message)
    base = str(request.base_url).rstrip("/")
    return JSONResponse({"commitUrl": f"{base}/{rid}/commit/{sha}", "commitOid": sha, "pullRequestUrl": None})


async def create_branch(request: Request) -> Response:
    rid, branch = repo_id(request), request.path_params["branch"]
    repo = HUB.repo(rid)
    if not HUB.authorised(request) or repo is None:
        return error(404, "RepoNotFound", f"Repository {rid} not found")
    start = (await request.json()).get("startingPoint") or "main"
    with LOCK:
        if branch in repo.heads:
            return error(409, "Conflict", f"branch {branch} already exists")
        base = HUB.commit(repo, start)
        if base is None:
            return error(404, "RevisionNotFound", f"Invalid rev id: {start}")
        repo.create_head(branch, base)
    return JSONResponse({})


async def create_tag(request: Request) -> Response:
    rid = repo_id(request)
    repo = HUB.repo(rid)
    if not HUB.authorised(request) or repo is None:
        return error(404, "RepoNotFound", f"Repository {rid} not found")
    tag = (await request.json())["tag"]
    with LOCK:
        target = HUB.commit(repo, request.path_params["revision"])
        if target is None:
            return error(404, "RevisionNotFound", f"Invalid rev id: {request.path_params['revision']}")
        if tag in repo.tags:
            return error(409, "Conflict", f"tag {tag} already exists")
        repo.create_tag(tag, ref=target)
    return JSONResponse({})


# -- read endpoints --------------------------------------------------------------------------------
async def revision_info(request: Request) -> Response:
    rid = repo_id(request)
    repo, denied = HUB.readable(request, rid)
    if denied is not None:
        return denied
    revision = request.path_params.get("revision", "main")
    target = HUB.commit(repo, revision)
    if target is None:
        return error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
    siblings = [{"rfilename": b.path} for b in target.tree.traverse() if b.type == "blob"]
    when = target.committed_datetime.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return JSONResponse({"_id": rid, "id": rid, "modelId": rid, "author": rid.split("/")[0], "sha": target.hexsha,
                         "lastModified": when, "createdAt": when, "private": HUB.is_private(rid), "gated": False,
                         "disabled": False, "tags": [], "downloads": 0, "likes": 0, "siblings": siblings})


async def tree(request: Request) -> Response:
    rid = repo_id(request)
    repo, denied = HUB.readable(request, rid)
    if denied is not None:
        return denied
    target = HUB.commit(repo, request.path_params["revision"])
    if target is None:
        return error(404, "RevisionNotFound", f"Invalid rev id: {request.path_params['revision']}")
    prefix = request.path_params.get("path", "").strip("/")
    recursive = request.query_params.get("recursive", "false").lower() in ("1", "true")
    items = []
    for item in target.tree.traverse():
        inside = item.path.startswith(prefix + "/") if prefix else True
        if not inside or (not recursive and "/" in item.path[len(prefix) + 1 if prefix else 0:]):
            continue
        if item.type == "blob":
            items.append(HUB.file_info(repo, item))
        else:
            items.append({"type": "directory", "oid": item.hexsha, "size": 0, "path": item.path})
    return JSONResponse(items)


async def refs(request: Request) -> Response:
    rid = repo_id(request)
    repo, denied = HUB.readable(request, rid)
    if denied is not None:
        return denied
    branches = [{"name": h.name, "ref": h.path, "targetCommit": h.commit.hexsha} for h in repo.heads]
    tags = [{"name": t.name, "ref": t.path, "targetCommit": t.commit.hexsha} for t in repo.tags]
    return JSONResponse({"branches": branches, "tags": tags, "converts": []})


async def faults(request: Request) -> Response:
    """``POST`` replaces the queued faults; ``GET`` shows what is still queued (consumed ones are gone)."""
    if request.method == "POST":
        HUB.faults.clear()
        for path, modes in (await request.json()).items():
            HUB.faults[path] = list(modes)
    return JSONResponse({k: list(v) for k, v in HUB.faults.items() if v})


async def resolve(request: Request) -> Response:
    rid, path = repo_id(request), request.path_params["path"]
    repo, denied = HUB.readable(request, rid)
    if denied is not None:
        return denied
    revision = request.path_params["revision"]
    target = HUB.commit(repo, revision)
    if target is None:
        return error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
    try:
        blob = target.tree / path
    except KeyError:
        return error(404, "EntryNotFound", f"{path} does not exist at {revision}")
    data = blob.data_stream.read()
    pointer = parse_pointer(data)
    headers = {"X-Repo-Commit": target.hexsha, "Accept-Ranges": "bytes"}
    if pointer is not None:
        oid, size = pointer
        headers |= {"ETag": f'"{blob.hexsha}"', "X-Linked-Etag": f'"{oid}"', "X-Linked-Size": str(size)}
        source = HUB.lfs_object(repo, oid)
    else:
        headers["ETag"] = f'"{blob.hexsha}"'
        size, source = len(data), None
    if request.method == "HEAD":
        return Response(headers={**headers, "Content-Length": str(size)})
    faults = HUB.faults.get(path)
    fault = faults.pop(0) if faults else None
    if fault == "error":
        return error(503, "ServiceUnavailable", "the test server is down")
    if fault in ("drop", "corrupt"):
        content = source.read_bytes() if source is not None else data
        return faulty_response(content, fault, headers, request.headers.get("range"))
    if source is not None:
        return FileResponse(source, headers=headers)
    return Response(data, headers=headers)


def faulty_response(content: bytes, fault: str, headers: dict[str, str], range_header: str | None) -> Response:
    """A download that goes wrong: cut after half the body (``drop``) or silently altered (``corrupt``)."""
    start = int(range_header.split("=")[1].split("-")[0]) if range_header else 0
    body = content[start:]
    status = 206 if start else 200
    if start:
        headers = {**headers, "Content-Range": f"bytes {start}-{len(content) - 1}/{len(content)}"}
    if fault == "corrupt":
        middle = len(body) // 2
        return Response(body[:middle] + bytes(b ^ 0xFF for b in body[middle:middle + 64]) + body[middle + 64:],
                        status_code=status, headers=headers)

    async def half_then_cut() -> AsyncIterator[bytes]:
        yield body[: len(body) // 2]
        raise ConnectionAbortedError("test fault: connection dropped mid-body")

    return StreamingResponse(half_then_cut(), status_code=status,
                             headers={**headers, "Content-Length": str(len(body))})


ROUTES = [
    Route("/api/repos/create", create_repo, methods=["POST"]),
    Route("/api/validate-yaml", validate_yaml, methods=["POST"]),
    Route("/api/models/{org}/{name}/preupload/{revision}", preupload, methods=["POST"]),
    Route("/api/models/{org}/{name}/commit/{revision}", commit, methods=["POST"]),
    Route("/api/models/{org}/{name}/branch/{branch}", create_branch, methods=["POST"]),
    Route("/api/models/{org}/{name}/tag/{revision}", create_tag, methods=["POST"]),
    Route("/api/models/{org}/{name}/revision/{revision}", revision_info, methods=["GET"]),
    Route("/api/models/{org}/{name}", revision_info, methods=["GET"]),
    Route("/api/models/{org}/{name}/tree/{revision}", tree, methods=["GET"]),
    Route("/api/models/{org}/{name}/tree/{revision}/{path:path}", tree, methods=["GET"]),
    Route("/api/models/{org}/{name}/refs", refs, methods=["GET"]),
    Route("/_test/faults", faults, methods=["GET", "POST"]),
    Route("/{org}/{name}/resolve/{revision}/{path:path}", resolve, methods=["GET", "HEAD"]),
]


def main(argv: list[str] | None = None) -> None:
    """Listen on a free loopback port, print it, and serve until killed."""
    global HUB  # noqa: PLW0603 - one server per process
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    HUB = Hub(args.root, args.token)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(Starlette(routes=ROUTES), log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
