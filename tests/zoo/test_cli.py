"""The ``sslzoo`` command: zoo's own subcommands and their errors."""

from __future__ import annotations

import json
import subprocess
import sys

import zoo
from zoo.cli import main


def test_list_info_alias_rm(capsys):
    zoo.save(zoo.build_encoder("vit_nano", in_chans=1), "nano")
    assert main(["list"]) == 0
    assert "nano@1" in capsys.readouterr().out
    assert main(["info", "nano"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ref"] == "nano@1" and info["embedding_space"].startswith("es-")
    assert info["config"]["embed_dim"] == 128
    assert main(["alias", "nano@1", "best"]) == 0
    assert main(["rm", "nano@best"]) == 0
    assert "deleted nano@1" in capsys.readouterr().out
    assert zoo.list() == []


def test_user_errors_are_one_line_and_exit_2(capsys):
    assert main(["info", "nothing-here"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sslzoo info: error: no model named 'nothing-here'")
    assert "Traceback" not in err


def test_console_script_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "zoo.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("list", "info", "rm", "alias", "data"):
        assert command in out


def test_zoo_import_does_not_import_torch():
    code = "import sys, zoo; zoo.list(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
