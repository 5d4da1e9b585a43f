"""``sslzoo push`` and ``sslzoo pull``: the CLI over zoo.hub, with its one-line errors."""

from __future__ import annotations

import torch

import zoo
from zoo import hub
from zoo.cli import main


def test_push_then_pull_on_the_command_line(hub_server, olah_server, repo_id, monkeypatch, capsys):
    torch.manual_seed(21)
    saved = zoo.save(zoo.build_encoder("vit_nano", in_chans=1), "tiny")
    monkeypatch.setenv("HF_TOKEN", hub_server.token)  # the token the way users give it
    assert main(["push", "tiny", repo_id, "--endpoint", hub_server.url, "--tag", "v1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"pushed tiny to {repo_id}@main: commit ") and saved.embedding_space in out
    commit = out.split("commit ")[1].split()[0]

    monkeypatch.setenv("SSLZOO_HF_ENDPOINT", olah_server.url)
    assert main(["pull", f"{repo_id}@v1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == (f"{hub.entry_name(repo_id)}@1: {repo_id}@{commit} (sslzoo), licence apache-2.0, "
                    f"embedding space {saved.embedding_space}")


def test_pull_errors_are_one_line(hub_server, capsys):
    assert main(["pull", "acme/nothing-here", "--endpoint", hub_server.url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sslzoo pull: error: no Hub repository 'acme/nothing-here'") and "Traceback" not in err
    assert main(["push", "no-such-model", "acme/x", "--endpoint", hub_server.url]) == 2
    assert capsys.readouterr().err.startswith("sslzoo push: error: no model named 'no-such-model'")


def test_catalogue_listing(capsys):
    assert main(["pull", "--catalogue"]) == 0
    out = capsys.readouterr().out
    assert "mae-vitb16" in out and "cc-by-nc-4.0" in out and "timm/vit_small_patch16_224.dino" in out
