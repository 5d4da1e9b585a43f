"""The Bento a user ships: models inside it, served from BentoML's store in an empty folder.

Exactly what a user does, in fresh ``BENTOML_HOME`` and ``SSLZOO_HOME``: import the served entries into
the model store, ``bentoml build`` (offline), then ``bentoml serve sslzoo:<tag>`` from another empty
folder. ``bentoml containerize`` needs Docker, so the container's inputs (the generated Dockerfile and
requirements) are checked instead, against ``bentofile.yaml`` and against what the served code imports.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from svc_helpers import BENTOML, REPO, Server, data_uri, free_port

import zoo
from zoo.manifest import verify_manifest
from zoo.registry import builtin_root

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("uv") is None,
                       reason="bentoml build pip-installs uv when it is missing; install the dev extra first"),
]
EXTRA = "dino"  # an ONNX entry served beside the default CLIP (torch): both backends travel in the Bento
SOURCE = zoo.Registry(Path("/nonexistent"), readonly_roots=(builtin_root(),))  # the shipped entries, the reference
OFFLINE = {"PIP_NO_INDEX": "1", "UV_OFFLINE": "1", "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9"}  # a build that tried to resolve or lock packages would fail


@dataclass(frozen=True)
class Built:
    env: dict[str, str]
    tag: str
    root: Path  # the Bento's folder in the store
    imported: list[str]  # the import command's lines, one per entry


def _run(args: list[str], env: dict[str, str], cwd: Path = REPO) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("bento")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSLZOO_", "BENTOML_"))}
    env.update({"BENTOML_HOME": str(base / "bentoml"), "SSLZOO_HOME": str(base / "sslzoo"),
                "BENTOML_DO_NOT_TRACK": "True", "SSLZOO_MODELS": EXTRA})
    lines = _run([sys.executable, "-m", "service.import_models"], env).splitlines()
    tag = _run([str(BENTOML), "build", "--output", "tag"], {**env, **OFFLINE}).strip().splitlines()[-1]
    tag = tag.removeprefix("__tag__:")
    bentos = list((base / "bentoml" / "bentos" / "sslzoo").glob("*/bento.yaml"))
    assert len(bentos) == 1, tag
    return Built(env, tag, bentos[0].parent, lines)


def _model_tags(env: dict[str, str]) -> list[str]:
    listed = json.loads(_run([str(BENTOML), "models", "list", "-o", "json"], env))
    return sorted(model["tag"] for model in listed)


def test_import_is_idempotent_and_labelled(built: Built):
    tags = _model_tags(built.env)
    assert [line.split()[0] for line in built.imported] == [SOURCE.resolve(ref).ref for ref in ("default", EXTRA)]
    assert sorted(line.split()[1] for line in built.imported) == tags
    again = _run([sys.executable, "-m", "service.import_models"], built.env).splitlines()
    assert [line.split()[:2] for line in again] == [line.split()[:2] for line in built.imported]
    assert _model_tags(built.env) == tags  # the same entries: no new version
    source = SOURCE.resolve("default")
    shown = yaml.safe_load(_run([str(BENTOML), "models", "get", tags[0]], built.env))
    config = source.read_config()
    assert shown["labels"] == {"project": "sslzoo", "zoo_ref": source.ref, "method": config.method,
                               "architecture": config.arch, "embedding_space": source.embedding_space,
                               "license": config.license}


def test_bento_carries_the_models_whole(built: Built):
    listed = json.loads(_run([str(BENTOML), "list", "-o", "json"], built.env))
    assert [b["tag"] for b in listed] == [built.tag]
    assert not listed[0]["model_size"].startswith("0.00"), listed  # models inside, not 0 B
    info = yaml.safe_load((built.root / "bento.yaml").read_text())
    packed = sorted(m["tag"] for service in info["services"] for m in service["models"])
    assert packed == _model_tags(built.env)
    store = Path(built.env["BENTOML_HOME"]) / "models"
    for tag in packed:
        name, version = tag.split(":")
        (entry,) = [p for p in (store / name / version / "models").glob("*/*") if p.is_dir()]
        source = SOURCE.resolve(f"{entry.parent.name}@{entry.name}")
        assert verify_manifest(entry) == source.manifest()  # every file present and unchanged
        assert sorted(p.name for p in entry.iterdir()) == sorted(p.name for p in source.path.iterdir())
    # the built-in entries travel only as models: no half-copied entry (manifests without weights) in src/
    assert not (built.root / "src" / "zoo" / "builtin").exists()
    assert (built.root / "src" / "service" / "index" / "faiss_sqlite.py").is_file()
    assert not (built.root / "src" / "tests").exists()


def _requirements(built: Built) -> list[str]:
    lines = (built.root / "env" / "python" / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-"))]


def test_container_inputs_come_from_bentofile(built: Built):
    """The Dockerfile installs the requirements, which hold bentofile.yaml's packages and the entries' own."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    bentofile = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    requirements = _requirements(built)
    for package in bentofile["python"]["packages"]:
        assert package in requirements, f"{package} from bentofile.yaml is missing from the Bento's requirements"
    names = {canonicalize_name(Requirement(line).name) for line in requirements}
    for entry in (SOURCE.resolve(ref) for ref in ("default", EXTRA)):  # weights read from packages
        for ref in entry.read_config().extra.get("external_weights") or []:
            assert canonicalize_name(ref["package"]) in names, f"{entry.ref} needs {ref['package']}"
    dockerfile = (built.root / "env" / "docker" / "Dockerfile").read_text()
    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}" in dockerfile
    assert "pip install -r $BENTO_PATH/env/python/requirements.txt" in dockerfile
    assert "ENTRYPOINT" in dockerfile and (built.root / "env" / "docker" / "entrypoint.sh").is_file()


IMPORTS = """
import ast, importlib, importlib.metadata as md, json, pkgutil, sys
import bentoml
import service
from service.models import packed_roots
from service.runtime import ModelRuntime
from service.settings import Settings
from zoo.registry import Registry
for found in pkgutil.walk_packages(service.__path__, "service."):  # every module the service may import
    importlib.import_module(found.name)
bento = bentoml.get(sys.argv[1])
runtime = ModelRuntime(Settings.from_env(), Registry(readonly_roots=packed_roots(bento, [])))
for ref in sys.argv[2:]:
    runtime.get(ref)
ours = {"zoo", "service", "export", "training"}
names = set()
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None) or ""
    if module.__name__.split(".")[0] in ours and path.endswith(".py"):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
dists = md.packages_distributions()
names -= set(sys.stdlib_module_names) | ours | {"__future__"}
print(json.dumps({n: dists.get(n, []) for n in sorted(names)}))
"""


def test_requirements_cover_what_the_served_code_imports(built: Built):
    """Load the packed entries as the Bento's service does, from its own src/; every import of the code it ran
    (lazy ones too) must come from a distribution the requirements bring."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    used = json.loads(_run([sys.executable, "-c", IMPORTS, built.tag, "default", EXTRA], built.env,
                           cwd=built.root / "src"))
    closure: set[str] = set()
    todo = [Requirement(line) for line in _requirements(built)]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in closure:
            continue
        closure.add(name)
        try:
            deps = importlib.metadata.requires(req.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for dep in map(Requirement, deps):
            extras = req.extras or {""}
            if dep.marker is None or any(dep.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(dep)
    assert not [name for name, dists in used.items() if not dists], f"imports no installed distribution provides: {used}"
    missing = sorted({d for dists in used.values() for d in dists if canonicalize_name(d) not in closure})
    assert not missing, f"the served code imports distributions no requirement brings: {missing}"


class BentoServer(Server):
    """``bentoml serve <bento tag>`` from a folder of its own (the Server helper serves the source tree)."""

    def __init__(self, tag: str, cwd: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / "server.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(BENTOML), "serve", tag, "--host", "127.0.0.1", "--port", str(self.port)],
                                     cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)


def _shape(color: str, shape: str) -> str:
    import io

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (96, 96), "white")
    draw = ImageDraw.Draw(image)
    (draw.ellipse if shape == "circle" else draw.rectangle)((20, 20, 76, 76), fill=color)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return data_uri(buffer.getvalue())


def test_serve_from_the_store_in_an_empty_folder(built: Built, tmp_path: Path):
    env = {k: v for k, v in built.env.items() if k != "SSLZOO_MODELS"}  # the Bento knows what it carries
    env["SSLZOO_HOME"] = str(tmp_path / "empty-home")
    (tmp_path / "run").mkdir()
    server = BentoServer(built.tag, tmp_path / "run", env)
    try:
        server.wait()
        default = SOURCE.resolve("default")  # the source tree's entry, the reference
        red, blue = _shape("red", "circle"), _shape("blue", "square")
        embedded = server.post("/embed", {"images": [red]})
        assert embedded.status_code == 200, embedded.text
        body = embedded.json()
        assert (body["model"], body["embedding_space"]) == (default.ref, default.embedding_space)
        assert len(body["embeddings"][0]) == default.read_config().embed_dim
        extra = server.post("/embed", {"images": [red], "model": EXTRA}).json()
        assert extra["embedding_space"] == SOURCE.resolve(EXTRA).embedding_space, extra
        labels = ["a red circle", "a blue square", "a green star"]
        classified = server.post("/classify", {"images": [red, blue], "candidate_labels": labels, "top_k": 1})
        assert classified.status_code == 200, classified.text
        assert [r[0]["label"] for r in classified.json()["results"]] == ["a red circle", "a blue square"]
        added = server.post("/index/add", {"ids": ["red", "blue"], "images": [red, blue]})
        assert added.status_code == 200, added.text
        found = server.post("/search", {"texts": ["a blue square"], "k": 2})
        assert found.status_code == 200, found.text
        assert [hit["id"] for hit in found.json()["results"][0]] == ["blue", "red"]
    finally:
        server.stop()
    assert not (tmp_path / "empty-home" / "models").exists()  # nothing came from a registry
