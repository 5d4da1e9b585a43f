"""A process killed in the middle of ``save`` leaves the registry loadable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import zoo

SAVER = textwrap.dedent("""
    import sys, torch, zoo
    encoder = zoo.build_encoder("resnet18", img_size=32)   # ~45 MB of weights: a save takes a while
    while True:
        print("begin", flush=True)
        zoo.save(encoder, "big")
        print("saved", flush=True)
        with torch.no_grad():
            next(encoder.parameters()).add_(1.0)
""")


def _wait_for_temp_folder(model_dir: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for tmp in model_dir.glob(".tmp-*"):
            try:
                if any(tmp.iterdir()):
                    return
            except FileNotFoundError:  # that save finished between glob and iterdir
                pass
        time.sleep(0.001)
    raise AssertionError("the saver never started writing")


def test_kill_during_save_leaves_no_half_written_version(sslzoo_home: Path):
    proc = subprocess.Popen([sys.executable, "-c", SAVER], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "SSLZOO_HOME": str(sslzoo_home)})
    assert proc.stdout is not None
    begins = 0
    try:
        for line in proc.stdout:
            if line.strip() == "begin":
                begins += 1
                if begins == 3:  # two complete saves behind us: kill the third once its files appear
                    _wait_for_temp_folder(sslzoo_home / "models" / "big")
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    model_dir = sslzoo_home / "models" / "big"
    leftovers = list(model_dir.glob(".tmp-*"))
    versions = [e.version for e in zoo.list()]
    assert versions == [1, 2]
    assert leftovers, "the kill should have interrupted the third save"
    for entry in zoo.list():
        entry.verify()
        zoo.load(entry.ref)
    # The next save still works and takes the next free number.
    assert zoo.save(zoo.load("big"), "big").version == versions[-1] + 1
