"""Projection and prediction heads, each a few lines on a base class that takes layer specs.

A spec is ``(in_dim, out_dim, norm, activation)``: a ``Linear`` (without bias when a norm follows, since
the norm's shift replaces it), then the norm, then the activation. Sizes default to the papers'; the
methods pass their own hyper-parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

LayerSpec = tuple[int, int, nn.Module | None, nn.Module | None]


class ProjectionHead(nn.Module):
    """An MLP built from ``(in_dim, out_dim, norm, activation)`` specs (lightly's design)."""

    def __init__(self, blocks: Sequence[LayerSpec]) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("a head needs at least one layer spec")
        layers: list[nn.Module] = []
        for in_dim, out_dim, norm, activation in blocks:
            layers.append(nn.Linear(in_dim, out_dim, bias=norm is None))
            if norm is not None:
                layers.append(norm)
            if activation is not None:
                layers.append(activation)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_dim]`` → ``[B, out_dim]``."""
        return self.layers(x)


def _check_dims(**dims: int) -> None:
    bad = {name: value for name, value in dims.items() if value < 1}
    if bad:
        raise ValueError(f"head dimensions must be positive, got {bad}")


class SimCLRProjectionHead(ProjectionHead):
    """SimCLR's ``g(·)`` (Chen et al. 2020, §2.1): Linear-BN-ReLU repeated, then a linear output.

    v1 uses 2 layers; SimCLR v2 found 3 better. The paper's hidden width equals the backbone's.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, num_layers: int = 2) -> None:
        _check_dims(in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim, num_layers=num_layers)
        blocks: list[LayerSpec] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            blocks.append((dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)))
            dim = hidden_dim
        blocks.append((dim, out_dim, None, None))
        super().__init__(blocks)


class BYOLProjectionHead(ProjectionHead):
    """BYOL's projector (Grill et al. 2020, §3.3): Linear(4096)-BN-ReLU-Linear(256)."""

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 256) -> None:
        _check_dims(in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim)
        super().__init__([(in_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)),
                          (hidden_dim, out_dim, None, None)])


class BYOLPredictionHead(BYOLProjectionHead):
    """BYOL's predictor ``q_θ``: the same MLP shape as the projector, ``256 → 4096 → 256``."""

    def __init__(self, in_dim: int = 256, hidden_dim: int = 4096, out_dim: int = 256) -> None:
        super().__init__(in_dim, hidden_dim, out_dim)


class MoCoV3ProjectionHead(ProjectionHead):
    """MoCo v3's projector (Chen, Xie, He 2021, §4): 3 layers of 4096, BN after every layer.

    The last BN has no affine parameters, as in the official ``_build_mlp(..., last_bn=True)``.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 4096, out_dim: int = 256, num_layers: int = 3) -> None:
        _check_dims(in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim, num_layers=num_layers)
        blocks: list[LayerSpec] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            blocks.append((dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)))
            dim = hidden_dim
        blocks.append((dim, out_dim, nn.BatchNorm1d(out_dim, affine=False), None))
        super().__init__(blocks)


class MoCoV3PredictionHead(ProjectionHead):
    """MoCo v3's predictor: 2 layers, ``256 → 4096 → 256``, no BN on the output."""

    def __init__(self, in_dim: int = 256, hidden_dim: int = 4096, out_dim: int = 256) -> None:
        _check_dims(in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim)
        super().__init__([(in_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)),
                          (hidden_dim, out_dim, None, None)])


class SimSiamProjectionHead(ProjectionHead):
    """SimSiam's projector (Chen & He 2021, §4.1): 3 layers of 2048 with BN on every layer, output too."""

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 2048) -> None:
        _check_dims(in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim)
        super().__init__([(in_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)),
                          (hidden_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)),
                          (hidden_dim, out_dim, nn.BatchNorm1d(out_dim, affine=False), None)])


class SimSiamPredictionHead(ProjectionHead):
    """SimSiam's predictor ``h``: a 512-wide bottleneck, ``2048 → 512 → 2048`` (§4.1)."""

    def __init__(self, in_dim: int = 2048, hidden_dim: int = 512, out_dim: int = 2048) -> None:
        _check_dims(in_dim=in_dim, hidden_dim=hidden_dim, out_dim=out_dim)
        super().__init__([(in_dim, hidden_dim, nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)),
                          (hidden_dim, out_dim, None, None)])


class DINOProjectionHead(nn.Module):
    """DINO's head (Caron et al. 2021, §3.1 and App. C).

    An MLP with GELU → an L2-normalised bottleneck → a weight-normalised linear layer without bias to
    ``out_dim`` prototypes.
    With ``norm_last_layer`` the weight norm's magnitude ``g`` is fixed at 1, which the paper found
    stabilises training of ViTs (App. C). The paper uses 2048 hidden, 256 bottleneck, 65,536 outputs.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256, out_dim: int = 65536,
                 num_layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True) -> None:
        super().__init__()
        _check_dims(in_dim=in_dim, hidden_dim=hidden_dim, bottleneck_dim=bottleneck_dim, out_dim=out_dim,
                    num_layers=num_layers)
        blocks: list[LayerSpec] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            blocks.append((dim, hidden_dim, nn.BatchNorm1d(hidden_dim) if use_bn else None, nn.GELU()))
            dim = hidden_dim
        blocks.append((dim, bottleneck_dim, None, None))
        self.mlp = ProjectionHead(blocks)
        self.apply(self._init_weights)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            magnitude.fill_(1.0)
        magnitude.requires_grad = not norm_last_layer

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # DINO initialises the MLP with a truncated normal (std 0.02) and zero biases.
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, in_dim]`` → ``[B, out_dim]`` logits over the prototypes."""
        x = F.normalize(self.mlp(x), dim=-1, eps=1e-6)
        return self.last_layer(x)

