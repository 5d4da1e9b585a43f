"""One pickle-suffix list, refused by every loader: a local file or folder, a Hub repo of each format, open_clip.

The suffix list once existed twice and the copies disagreed (only one had ``.tar``, the legacy
``torch.save`` archive), so a ``.tar`` checkpoint was refused by a Hub pull but not by ``zoo.load``.
Each case here runs over the whole list, ``.tar`` included.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import zoo
from zoo.errors import UnsafeWeightsError
from zoo.hub import formats

PICKLE = b"\x80\x04K\x01."  # a real pickle of the int 1: never read, only named
#: Written out here, not read from zoo.pickles, so that dropping one from the list fails every loader's case.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".tar")


@pytest.mark.parametrize("suffix", PICKLE_SUFFIXES)
def test_a_local_pickle_file_or_folder_is_refused(tmp_path: Path, suffix: str):
    checkpoint = tmp_path / f"checkpoint{suffix}"
    checkpoint.write_bytes(PICKLE)
    with pytest.raises(UnsafeWeightsError, match="safetensors only"):
        zoo.load(checkpoint)
    with pytest.raises(UnsafeWeightsError, match=f"checkpoint\\{suffix}"):
        zoo.locate(tmp_path)


def _reader(files: dict[str, object]):
    return lambda name: files[name]


@pytest.mark.parametrize("suffix", PICKLE_SUFFIXES)
def test_a_hub_repo_offering_only_pickles_is_refused_in_every_format(suffix: str):
    timm_config = {"architecture": "vit_small_patch16_224", "pretrained_cfg": {}}
    with pytest.raises(UnsafeWeightsError, match=f"pytorch_model\\{suffix}"):  # timm layout, pickle weights
        formats.choose({"config.json", f"pytorch_model{suffix}"}, _reader({"config.json": timm_config}), None, "o/r")
    with pytest.raises(UnsafeWeightsError, match=f"open_clip_model\\{suffix}"):  # open_clip layout
        formats.choose({"open_clip_config.json", f"open_clip_model{suffix}"}, _reader({}), None, "o/r")
    with pytest.raises(UnsafeWeightsError, match=f"weights\\{suffix}"):  # no layout at all, only a pickle
        formats.choose({f"weights{suffix}"}, _reader({}), None, "o/r")
    manifest = {"files": {"config.json": "x", f"model{suffix}": "y"}}  # an sslzoo manifest listing a pickle
    with pytest.raises(UnsafeWeightsError, match="pickle files"):
        formats.choose({"manifest.json", "config.json", f"model{suffix}"},
                       _reader({"manifest.json": json.loads(json.dumps(manifest))}), None, "o/r")


@pytest.mark.parametrize("suffix", PICKLE_SUFFIXES)
def test_open_clip_pickle_weights_are_refused(tmp_path: Path, suffix: str):
    pytest.importorskip("open_clip")
    from zoo.hub.openclip import from_open_clip

    with pytest.raises(UnsafeWeightsError, match="is a pickle"):
        from_open_clip("ViT-B-32", tmp_path / f"open_clip_pytorch_model{suffix}")
