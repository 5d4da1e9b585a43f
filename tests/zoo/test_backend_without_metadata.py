"""``zoo.load(..., backend="onnx")`` from plain source, as in a Bento's ``src/`` or a container built from it.

A Bento carries the project's packages as source and installs only its requirements, so the ``sslzoo``
distribution (whose ``sslzoo.backends`` entry point names the ONNX backend) is absent. The subprocess
here sees exactly that: ``python -S`` (no site, no ``.pth`` editable hook) with a path of a copied source
tree and the installed packages linked in without sslzoo's metadata.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np

import zoo
from zoo.api import SOURCE_BACKENDS
from zoo.registry import builtin_root

REPO = Path(__file__).resolve().parents[2]
ENTRY = builtin_root() / "models" / "simclr" / "1"  # a shipped entry with model.onnx

SCRIPT = """
import importlib.metadata as md, json, sys
import numpy as np
import zoo
assert not [d for d in md.distributions() if d.metadata["Name"] == "sslzoo"], "sslzoo metadata is visible"
assert not md.entry_points(group="sslzoo.backends"), "an sslzoo.backends entry point is visible"
model = zoo.load(sys.argv[1], backend="onnx")
pixels = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
print(json.dumps({"class": type(model).__module__ + "." + type(model).__name__, "zoo": zoo.__file__,
                  "torch": "torch" in sys.modules, "vectors": model.embed_uint8(pixels).tolist()}))
"""


def _source_tree(root: Path) -> Path:
    """The packages as a Bento carries them: source files only, no shipped entries, no metadata."""
    src = root / "src"
    for package in ("zoo", "export"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("builtin", "__pycache__"))
    return src


def _packages_without_sslzoo(root: Path) -> Path:
    """The venv's installed packages, linked one by one, minus sslzoo's dist-info and editable hooks."""
    farm = root / "site"
    farm.mkdir()
    for item in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not item.name.lower().startswith(("sslzoo", "__editable__")) and item.suffix != ".pth":
            (farm / item.name).symlink_to(item)
    return farm


def _run(tmp_path: Path) -> dict:
    src, farm = _source_tree(tmp_path), _packages_without_sslzoo(tmp_path)
    env = {"PYTHONPATH": f"{src}:{farm}", "PATH": "/usr/bin:/bin", "SSLZOO_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-S", "-c", SCRIPT, str(ENTRY)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_onnx_backend_is_found_in_a_source_tree_without_package_metadata(tmp_path: Path):
    out = _run(tmp_path)
    assert out["zoo"].startswith(str(tmp_path / "src"))  # the copied source, not the repository
    assert out["class"].startswith("export.runtime.Onnx") and not out["torch"]
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    expected = zoo.load(ENTRY, backend="onnx").embed_uint8(pixels)
    np.testing.assert_allclose(np.asarray(out["vectors"]), expected, atol=1e-6)


def test_the_source_fallback_names_what_the_entry_point_names():
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["sslzoo.backends"]
    assert declared == SOURCE_BACKENDS
