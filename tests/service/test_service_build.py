"""``bentoml build`` packs the service from ``bentofile.yaml`` without a network or a package index."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from svc_helpers import REPO


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("uv") is None,
                    reason="bentoml build pip-installs uv when it is missing; install the dev extra first")
def test_bentoml_build_works_offline(tmp_path: Path):
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "True",
           # no index can be reached: a build that tried to resolve or lock packages would fail
           "PIP_NO_INDEX": "1", "UV_OFFLINE": "1", "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    bentoml = Path(sys.executable).with_name("bentoml")
    done = subprocess.run([str(bentoml), "build", "--output", "tag"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    bentos = list((tmp_path / "bentos" / "sslzoo").glob("*/bento.yaml"))
    assert len(bentos) == 1, done.stdout
    root = bentos[0].parent
    assert (root / "src" / "service" / "service.py").is_file()
    assert (root / "src" / "service" / "index" / "faiss_sqlite.py").is_file()
    assert not (root / "src" / "tests").exists()
    requirements = (root / "env" / "python" / "requirements.txt").read_text()
    assert "faiss-cpu" in requirements and "bentoml" in requirements
