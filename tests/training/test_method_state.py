"""What a method's state_dict holds: each tensor once, so checkpoints store no weight twice.

MAE and I-JEPA once kept their backbone under a second attribute, which registered it twice: every
checkpoint held the backbone twice, and the checkpoint writer cloned tensors to get past safetensors'
refusal of shared storage. Checkpoints written then must still resume.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_methods import CASES, VIT_ONLY, make_method
from torch import Tensor, nn

from training.checkpoint import load_checkpoint, save_checkpoint
from training.methods import METHODS
from zoo.encoders import build_encoder

BACKBONE = "image_encoder.backbone."


def shared_storage(state: dict[str, object]) -> list[list[str]]:
    """Groups of state_dict keys whose tensors live in the same storage."""
    owners: dict[int, list[str]] = defaultdict(list)
    for key, value in state.items():
        if isinstance(value, Tensor) and value.numel():
            owners[value.untyped_storage().data_ptr()].append(key)
    return [keys for keys in owners.values() if len(keys) > 1]


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if isinstance(sa[k], Tensor))


@pytest.mark.parametrize(("name", "arch"), CASES)
def test_no_two_state_dict_entries_share_storage(name: str, arch: str) -> None:
    assert shared_storage(make_method(name, arch).state_dict()) == []


@pytest.mark.parametrize("name", sorted(VIT_ONLY))
def test_a_checkpoint_stores_the_backbone_once_and_resumes_from_it(name: str, tmp_path: Path) -> None:
    method = make_method(name, "vit_nano")
    folder = save_checkpoint(tmp_path, 1, method, torch.optim.SGD(method.parameters(), lr=0.1), {})
    assert folder is not None
    stored = load_file(str(folder / "model.safetensors"))
    assert set(stored) == set(method.state_dict()) and any(k.startswith(BACKBONE) for k in stored)
    fresh = make_method(name, "vit_nano", seed=1)
    assert not torch.equal(fresh.backbone.pos_embed, method.backbone.pos_embed)  # the load must change it
    load_checkpoint(folder, fresh, torch.optim.SGD(fresh.parameters(), lr=0.1))
    assert_same_state(fresh, method)


@pytest.mark.parametrize("name", sorted(VIT_ONLY))
def test_a_state_written_with_the_backbone_also_under_vit_still_loads(name: str) -> None:
    """The layout of checkpoints written before the fix: every backbone tensor again under ``vit.``."""
    method = make_method(name, "vit_nano")
    state = method.state_dict()
    legacy = {**state, **{"vit." + k.removeprefix(BACKBONE): v.clone() for k, v in state.items()
                          if k.startswith(BACKBONE)}}
    fresh = make_method(name, "vit_nano", seed=1)
    fresh.load_state_dict(legacy, strict=True)
    assert_same_state(fresh, method)
    with pytest.raises(RuntimeError, match=r"Unexpected key.*stray"):  # only the old copies are let through
        fresh.load_state_dict({**state, "stray.weight": torch.zeros(1)}, strict=True)


def test_the_clip_method_shares_no_storage_either() -> None:
    from zoo.data import load_dataset

    torch.manual_seed(0)
    dataset = load_dataset("shapes", "train", n=8, image_size=16)
    method = METHODS.get("clip")(encoder=build_encoder("resnet_narrow", img_size=16, embed_dim=16), dataset=dataset,
                                context_length=12, text_args={"width": 32, "layers": 1, "heads": 2})
    assert shared_storage(method.state_dict()) == []
