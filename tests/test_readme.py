"""Every Python example and every `sslzoo` command in the README runs, in README order, on a fresh registry.

Examples that need a running server sit between the service-example markers and are run by
tests/service against a real one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
SERVER_EXAMPLES = re.compile(r"<!-- service-examples:begin.*?<!-- service-examples:end -->", re.S)


def readme_script() -> str:
    """The README's python blocks and `sslzoo` commands as one Python script, in order."""
    parts = ["import shlex as _shlex, subprocess as _subprocess, sys as _sys"]
    for language, body in FENCE.findall(SERVER_EXAMPLES.sub("", README.read_text())):
        if language == "python":
            parts.append(body)
        elif language == "bash":
            for line in body.splitlines():
                command = line.split("  #")[0].strip()
                if command.startswith("sslzoo "):
                    parts.append(f"_subprocess.run([_sys.executable, '-m', 'zoo.cli', "
                                 f"*_shlex.split({command!r})[1:]], check=True)")
    return "\n\n".join(parts)


def test_readme_examples_run_in_order(sslzoo_home: Path, tmp_path: Path):
    script = readme_script()
    assert "zoo.cli" in script and "zoo.load" in script
    path = tmp_path / "readme_examples.py"
    path.write_text(script)
    work = tmp_path / "checkout"  # the repository's files, but its own runs/: outputs of earlier runs must not leak in
    work.mkdir()
    for entry in README.parent.iterdir():
        if entry.name not in {"runs", "artifacts", ".git"}:
            (work / entry.name).symlink_to(entry)
    result = subprocess.run([sys.executable, str(path)], check=False, capture_output=True, text=True, cwd=work,
                            env={**os.environ, "SSLZOO_HOME": str(sslzoo_home), "SSLZOO_BUILTIN": "1"},
                            timeout=600)  # as a user has it: the shipped models beside an empty home
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
