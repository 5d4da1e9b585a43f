"""Every Python example and every `sslzoo` command in the README runs, in order, on a fresh registry."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
# Examples that need a running server are run by tests/service against a real one.
SERVER_EXAMPLES = re.compile(r"<!-- service-examples:begin.*?<!-- service-examples:end -->", re.S)


def blocks(language: str) -> list[str]:
    text = SERVER_EXAMPLES.sub("", README.read_text())
    return [body for lang, body in FENCE.findall(text) if lang == language]


def test_readme_python_examples_run(sslzoo_home: Path, tmp_path: Path):
    script = tmp_path / "readme_examples.py"
    script.write_text("\n\n".join(blocks("python")))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "SSLZOO_HOME": str(sslzoo_home)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


def test_readme_cli_examples_run(sslzoo_home: Path, tmp_path: Path):
    import zoo

    zoo.save(zoo.build_encoder("vit_nano", in_chans=1), "my-encoder")
    commands = [line.split("#")[0].strip() for body in blocks("bash") for line in body.splitlines()]
    commands = [c for c in commands if c.startswith("sslzoo ")]
    assert commands, "the README shows sslzoo commands"
    for command in commands:
        argv = [sys.executable, "-m", "zoo.cli", *shlex.split(command)[1:]]
        result = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "SSLZOO_HOME": str(sslzoo_home)})
        assert result.returncode == 0, f"{command}: {result.stderr}"
