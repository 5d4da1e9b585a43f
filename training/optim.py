"""Optimisers: AdamW (the default) and LARS, with weight decay kept off biases and norms.

Each parameter group carries ``wd_scale`` (1 or 0) and ``lr_scale`` so the trainer can apply the
scheduled learning rate and weight decay every step without knowing which group is which. Frozen
parameters (EMA teachers, target encoders) never reach the optimiser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import ConfigError

OPTIMIZERS = ("adamw", "lars", "sgd")


def default_param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters split into decayed (matrices, kernels) and undecayed (biases, norms, tokens)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, param in sorted(module.named_parameters(), key=lambda item: item[0]):
        if not param.requires_grad:
            continue
        (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def method_param_groups(method: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The method's own ``param_groups(weight_decay)`` if it has one, else :func:`default_param_groups`.

    Groups get ``wd_scale`` (their decay relative to the schedule) and ``lr_scale`` (default 1) so the
    schedules can be applied to every group the same way.
    """
    custom: Callable[[float], list[dict[str, Any]]] | None = getattr(method, "param_groups", None)
    groups = custom(weight_decay) if callable(custom) else default_param_groups(method, weight_decay)
    out = []
    for group in groups:
        params = [p for p in group["params"] if p.requires_grad]
        if not params:
            continue
        wd = float(group.get("weight_decay", weight_decay))
        scale = wd / weight_decay if weight_decay > 0 else 0.0
        out.append({**group, "params": params, "weight_decay": wd,
                    "wd_scale": float(group.get("wd_scale", scale)), "lr_scale": float(group.get("lr_scale", 1.0))})
    if not out:
        raise ConfigError(f"{type(method).__name__} has no trainable parameters")
    return out


class LARS(torch.optim.Optimizer):
    """LARS (You et al. 2017) as used by SimCLR and BYOL: SGD with momentum and a layer-wise trust ratio.

    Groups whose ``wd_scale`` is 0 (biases and norms) skip both weight decay and the trust ratio, as in
    the SimCLR reference implementation.
    """

    def __init__(self, params: Iterable[Any], lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                 trust_coefficient: float = 0.001, eps: float = 1e-8) -> None:
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                    "trust_coefficient": trust_coefficient, "eps": eps}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One LARS update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            adapt = group.get("wd_scale", 1.0) > 0
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                if adapt:
                    grad = grad.add(param, alpha=group["weight_decay"])
                    p_norm, g_norm = torch.linalg.vector_norm(param), torch.linalg.vector_norm(grad)
                    trust = torch.where((p_norm > 0) & (g_norm > 0),
                                        group["trust_coefficient"] * p_norm / (g_norm + group["eps"]),
                                        torch.ones_like(p_norm))
                    grad = grad.mul(trust)
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(grad).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                param.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def build_optimizer(name: str, groups: list[dict[str, Any]], lr: float,
                    betas: tuple[float, float] = (0.9, 0.999), momentum: float = 0.9) -> torch.optim.Optimizer:
    """AdamW, LARS or SGD over prepared parameter groups; ``lr`` is the peak rate (schedules rescale it)."""
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ConfigError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
