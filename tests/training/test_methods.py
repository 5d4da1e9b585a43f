"""Every method: a training step that learns, the encoder hand-off, stop-gradients, momentum, masks."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from training.methods import METHODS
from training.methods.common import SSLMethod
from training.parts.momentum import cosine_schedule
from zoo.encoders import ImageEncoder, build_encoder
from zoo.errors import ConfigError


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is faster than two fighting for a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Tiny heads so a step takes a fraction of a second; defaults are exercised by the hparams test.
SMALL: dict[str, dict[str, Any]] = {
    "simclr": {"hidden_dim": 32, "out_dim": 16},
    "mocov3": {"proj_hidden_dim": 32, "out_dim": 16},
    "byol": {"proj_hidden_dim": 32, "out_dim": 16},
    "simsiam": {"proj_hidden_dim": 32, "out_dim": 32, "pred_hidden_dim": 8},
    "dino": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16, "num_local_crops": 2, "freeze_last_layer": 0.0},
    "mae": {"decoder_dim": 32, "decoder_depth": 1},
    "ijepa": {"predictor_dim": 32, "predictor_depth": 1},
}
VIT_ONLY = {"mae", "ijepa"}
CASES = [(name, arch) for name in SMALL for arch in ("vit_nano", "resnet_narrow") if not (
    name in VIT_ONLY and arch != "vit_nano")]
HEAD_WORDS = ("projection", "prediction", "predictor", "decoder", "teacher", "target", "momentum", "head.")


def make_encoder(arch: str, method: str = "") -> ImageEncoder:
    if arch == "vit_nano":
        return build_encoder("vit_nano", img_size=28, in_chans=1, depth=2,
                             pooling="mean" if method == "ijepa" else None)
    return build_encoder("resnet_narrow", img_size=32 if method == "simsiam" else 28, in_chans=1)


def make_method(name: str, arch: str, seed: int = 0, **overrides: Any) -> SSLMethod:
    torch.manual_seed(seed)
    method = METHODS.get(name)(make_encoder(arch, name), **{**SMALL[name], **overrides})
    method.generator = torch.Generator().manual_seed(seed)
    return method


def make_batch(b: int = 8, size: int = 28, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"images": torch.randint(0, 256, (b, 1, size, size), dtype=torch.uint8, generator=g),
            "index": torch.arange(b)}


def batch_for(method: SSLMethod, b: int = 8) -> dict[str, torch.Tensor]:
    return make_batch(b, method.image_size[0])


def test_every_registered_method_is_tested_here() -> None:
    """A new method must get a test-size entry in SMALL (CLIP, which needs captions, has tests/clip/)."""
    assert set(METHODS.names()) == set(SMALL) | {"clip"}


# DINO's own objective moves under it while the centre and τ_t warm up from zero; with them held, the
# student must match a slowly moving teacher, which is what "learns" means for it.
STEADY_TARGET: dict[str, dict[str, Any]] = {"dino": {"center_momentum": 0.999, "teacher_temp_warmup": 0.0}}


def objective_values(method: nn.Module) -> list[float]:
    """Every value the method's loss parts (``training.parts.losses``) return, in call order.

    The losses are checked against hand-written references in test_losses.py, so a method that flips,
    rescales or detaches what it returns cannot hide behind its own ``loss`` value.
    """
    values: list[float] = []
    parts = [m for m in method.modules() if type(m).__module__.startswith("training.parts.losses")]
    assert parts, f"{type(method).__name__} computes its loss outside training.parts.losses"
    for part in parts:
        part.register_forward_hook(lambda _m, _args, out: values.append(float(out.detach())))
    return values


@pytest.mark.parametrize(("name", "arch"), CASES)
def test_a_few_steps_on_a_fixed_batch_lower_the_objective(name: str, arch: str) -> None:
    """The same batch and the same views every step: the paper's objective must fall (a sign error, a
    detached branch or a wrong target does not)."""
    method = make_method(name, arch, **STEADY_TARGET.get(name, {}))
    method.train()
    values = objective_values(method)
    optimizer = torch.optim.AdamW(method.param_groups(0.0), lr=1e-3)
    batch, objective = batch_for(method, 16), []
    for step in range(10):
        method.generator.manual_seed(0)
        torch.manual_seed(0)
        values.clear()
        out = method.training_step(batch)
        objective.append(sum(values))
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        method.on_step_end(step, 10)
    first, last = objective[0], sum(objective[-3:]) / 3
    assert last < first - 0.02 * max(1.0, abs(first)), f"{name} on {arch}: objective per step {objective}"


@pytest.mark.parametrize(("name", "arch"), CASES)
def test_training_step_reaches_every_parameter(name: str, arch: str) -> None:
    method = make_method(name, arch)
    method.train()
    trainable = {n: p for n, p in method.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.SGD(method.param_groups(1e-4), lr=0.1)
    batch = batch_for(method)
    for step in range(2):
        out = method.training_step(batch)
        loss = out["loss"]
        assert loss.ndim == 0 and torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.on_step_end(step, 10)
    embeddings = out["embeddings"]
    assert embeddings.shape == (8, method.feature_dim) and not embeddings.requires_grad
    assert torch.isfinite(embeddings).all()
    for key, value in out.items():
        assert isinstance(value, torch.Tensor) and (key == "embeddings" or value.numel() == 1)
    # I-JEPA trains tokens, never the pooled vector, so the pooling norm (fc_norm) gets no gradient.
    unused = ("fc_norm",) if name == "ijepa" else ()
    no_grad = [n for n, p in trainable.items() if p.grad is None and not any(u in n for u in unused)]
    assert not no_grad, f"trainable parameters without gradient: {no_grad[:5]}"
    changed = [n for n, p in trainable.items() if not torch.equal(p, before[n])]
    encoder_changed = [n for n in changed if n.startswith("image_encoder.")]
    assert len(changed) > len(trainable) // 2 and encoder_changed


@pytest.mark.parametrize(("name", "arch"), CASES)
def test_encoder_is_the_backbone_alone(name: str, arch: str) -> None:
    method = make_method(name, arch)
    encoder = method.encoder()
    assert isinstance(encoder, ImageEncoder) and encoder.config.method == name
    keys = set(encoder.state_dict())
    assert keys == set(make_encoder(arch, name).state_dict())  # exactly a plain encoder's weights
    assert not [k for k in keys if any(word in k for word in HEAD_WORDS)]
    assert {id(p) for p in encoder.parameters()} <= {id(p) for p in method.parameters()}  # trained in place


@pytest.mark.parametrize("name", ["byol", "mocov3", "dino", "ijepa"])
def test_no_gradient_reaches_the_momentum_branch(name: str) -> None:
    """Even if the teacher's parameters asked for gradients, the step must not give them any."""
    method = make_method(name, "vit_nano")
    online = {id(p) for p in method.image_encoder.parameters()}
    branch = [m for n, m in method.named_children() if n.startswith(("target", "momentum", "teacher"))]
    assert branch
    teacher_params = [p for m in branch for p in m.parameters() if id(p) not in online]
    assert teacher_params and not any(p.requires_grad for p in teacher_params)  # frozen by the method
    for p in teacher_params:
        p.requires_grad_(True)
    method.training_step(batch_for(method))["loss"].backward()
    assert all(p.grad is None for p in teacher_params)


class _Detach(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()


@pytest.mark.parametrize("name", ["simsiam", "byol", "mocov3"])
def test_stop_gradient_leaves_only_the_predictor_path(name: str) -> None:
    """Cut the predictor's input: with a working stop-gradient (or no-grad target), nothing is left that
    connects the loss to the backbone, so the backbone gets no gradient at all."""
    method = make_method(name, "resnet_narrow")
    method.prediction_head = nn.Sequential(_Detach(), method.prediction_head)
    loss = method.training_step(batch_for(method))["loss"]
    if loss.requires_grad:
        loss.backward()
    assert all(p.grad is None for p in method.backbone.parameters())
    control = make_method(name, "resnet_narrow")  # the uncut method does train the backbone
    control.training_step(batch_for(control))["loss"].backward()
    assert any(p.grad is not None for p in control.backbone.parameters())


@pytest.mark.parametrize(("name", "pairs"), [("byol", [("backbone", "target_backbone")]),
                                             ("mocov3", [("backbone", "momentum_backbone")]),
                                             ("dino", [("backbone", "teacher_backbone"), ("head", "teacher_head")]),
                                             ("ijepa", [("vit", "target_encoder")])])
def test_on_step_end_applies_the_ema(name: str, pairs: list[tuple[str, str]]) -> None:
    method = make_method(name, "vit_nano")
    with torch.no_grad():
        for p in method.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))  # as if an optimiser step moved the student
    before = {t: [p.detach().clone() for p in getattr(method, t).parameters()] for _, t in pairs}
    method.on_step_end(3, 20)
    m = method.momentum
    if name == "ijepa":
        assert m == pytest.approx(0.996 + (1 - 0.996) * 3 / 20)
    else:
        assert m == pytest.approx(cosine_schedule(3, 20, method.base_momentum, 1.0))
    for student_name, teacher_name in pairs:
        student = list(getattr(method, student_name).parameters())
        for old, new, s in zip(before[teacher_name], getattr(method, teacher_name).parameters(), student,
                               strict=True):
            torch.testing.assert_close(new, m * old + (1 - m) * s.detach())


def test_dino_multicrop_teacher_sees_globals_only_and_centre_moves() -> None:
    method = make_method("dino", "vit_nano", num_local_crops=3)
    shapes: dict[str, list[tuple[int, ...]]] = {"teacher": [], "student": []}
    method.teacher_backbone.blocks[0].register_forward_hook(
        lambda _m, args, _o: shapes["teacher"].append(tuple(args[0].shape)))
    method.backbone.blocks[0].register_forward_hook(lambda _m, args, _o: shapes["student"].append(tuple(args[0].shape)))
    assert torch.count_nonzero(method.criterion.center) == 0
    method.training_step(make_batch(4))
    # tokens: 1 class token + 7×7 patches for 28-px globals, 1 + 3×3 for 12-px locals (96/224 of 28)
    assert shapes["teacher"] == [(8, 50, 128)]
    assert shapes["student"] == [(8, 50, 128), (12, 10, 128)]
    assert torch.count_nonzero(method.criterion.center) > 0


def test_dino_teacher_temperature_warms_up_and_last_layer_freezes() -> None:
    method = make_method("dino", "resnet_narrow", teacher_temp_warmup=0.5, freeze_last_layer=0.2)
    assert method.teacher_temp == pytest.approx(0.04)
    method.on_step_end(5, 20)
    assert method.teacher_temp == pytest.approx(0.04 + 0.03 * 5 / 10)
    method.on_step_end(0, 20)
    method.training_step(batch_for(method))["loss"].backward()
    assert all(torch.count_nonzero(p.grad) == 0 for p in method.head.last_layer.parameters() if p.requires_grad)
    method.zero_grad()
    method.on_step_end(10, 20)
    assert method.teacher_temp == pytest.approx(0.07)
    method.training_step(batch_for(method))["loss"].backward()
    assert any(torch.count_nonzero(p.grad) > 0 for p in method.head.last_layer.parameters() if p.requires_grad)


@pytest.mark.parametrize(("mask_ratio", "visible"), [(0.75, 12), (0.9, 5), (0.5, 24)])
def test_mae_encoder_sees_only_visible_patches(mask_ratio: float, visible: int) -> None:
    method = make_method("mae", "vit_nano", mask_ratio=mask_ratio)
    seen: list[tuple[int, ...]] = []
    method.backbone.blocks[0].register_forward_hook(lambda _m, args, _o: seen.append(tuple(args[0].shape)))
    out = method.training_step(make_batch(4))
    assert seen == [(4, 1 + visible, 128)]  # class token + round(49 · (1 − ratio)) patches
    assert torch.isfinite(out["loss"])


def test_mae_decoder_predicts_every_patch() -> None:
    method = make_method("mae", "vit_nano")
    pixels = torch.randn(2, 1, 28, 28)
    latent, mask = method.forward_encoder(pixels)
    pred = method.forward_decoder(latent, mask)
    assert pred.shape == (2, 49, 16) and mask.mask.sum().item() == 2 * 37


def test_ijepa_context_encoder_sees_only_the_context_block() -> None:
    method = make_method("ijepa", "vit_nano")
    seen: list[tuple[int, ...]] = []
    method.backbone.blocks[0].register_forward_hook(lambda _m, args, _o: seen.append(tuple(args[0].shape)))
    target_seen: list[tuple[int, ...]] = []
    method.target_encoder.blocks[0].register_forward_hook(
        lambda _m, args, _o: target_seen.append(tuple(args[0].shape)))
    out = method.training_step(make_batch(4))
    context = int(out["context_tokens"].item())
    assert 1 <= context < 49 and seen == [(4, 1 + context, 128)]
    assert target_seen == [(4, 50, 128)]  # the target encoder sees the whole image


@pytest.mark.parametrize("name", sorted(VIT_ONLY))
def test_masked_methods_need_a_vit(name: str) -> None:
    with pytest.raises(ConfigError, match="ViT"):
        METHODS.get(name)(make_encoder("resnet_narrow"))


def test_ijepa_warns_about_class_token_pooling() -> None:
    with pytest.warns(UserWarning, match="pooling='mean'"):
        METHODS.get("ijepa")(build_encoder("vit_nano", img_size=28, in_chans=1, depth=1), predictor_depth=1)


@pytest.mark.parametrize("name", ["simclr", "mocov3", "byol", "simsiam", "dino"])
def test_batch_too_small_is_a_clear_error(name: str) -> None:
    method = make_method(name, "resnet_narrow")
    assert method.min_batch_size >= 2
    with pytest.raises(ValueError, match="at least 2"):
        method.training_step(batch_for(method, b=1))
    with pytest.raises(ValueError, match="uint8"):
        method.training_step({"images": torch.rand(4, 1, 28, 28)})


@pytest.mark.parametrize("name", list(SMALL))
def test_steps_are_reproducible_under_a_seed(name: str) -> None:
    arch = "vit_nano"
    a = make_method(name, arch, seed=1).training_step(make_batch(4))["loss"]
    b = make_method(name, arch, seed=1).training_step(make_batch(4))["loss"]
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", list(SMALL))
def test_hparams_are_json_defaults_and_flags_are_declared(name: str) -> None:
    cls = METHODS.get(name)
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]
    defaults = {p.name: p.default for p in params}
    assert inspect.Parameter.empty not in defaults.values()
    json.dumps(defaults)
    assert isinstance(cls.min_batch_size, int)


def test_param_groups_skip_decay_for_biases_norms_and_tokens() -> None:
    method = make_method("mae", "vit_nano")
    decay, no_decay = method.param_groups(0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in method.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert {"image_encoder.backbone.pos_embed", "image_encoder.backbone.cls_token", "decoder.mask_token"} <= no_decay_names
    assert all(p.ndim > 1 for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len([p for p in method.parameters() if p.requires_grad])


def test_mocov3_freezes_the_vit_patch_projection() -> None:
    method = make_method("mocov3", "vit_nano")
    assert not any(p.requires_grad for p in method.backbone.patch_embed.parameters())
    free = make_method("mocov3", "vit_nano", freeze_patch_embed=False)
    assert all(p.requires_grad for p in free.backbone.patch_embed.parameters())


def test_views_setting_reaches_the_view_configs() -> None:
    method = make_method("simclr", "resnet_narrow", views={"scale": [0.5, 1.0], "hflip_p": 0.0})
    assert all(c.scale == (0.5, 1.0) and c.hflip_p == 0.0 for c in method.views.configs)
    with pytest.raises(ValueError, match="unknown view settings"):
        make_method("simclr", "resnet_narrow", views={"blur": 1.0})
