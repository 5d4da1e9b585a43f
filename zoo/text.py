"""Text towers for CLIP models, registered by architecture name.

The default ``transformer`` is open_clip's text tower in miniature: token and position embeddings,
pre-norm blocks with causal or bidirectional attention, a final LayerNorm, pooling at ``[EOT]`` (or
the mean of real tokens), and a linear projection into the joint space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import Tensor, nn

from zoo.config import TextConfig
from zoo.errors import ConfigError, UnknownNameError
from zoo.tokenizer import encode_texts

TextArch = Callable[..., nn.Module]
_TEXT_ARCHS: dict[str, TextArch] = {}


def register_text_arch(name: str) -> Callable[[TextArch], TextArch]:
    """Register a text-tower constructor; it takes ``embed_dim``, ``pooling`` and its ``arch_args``."""

    def wrap(fn: TextArch) -> TextArch:
        _TEXT_ARCHS[name] = fn
        return fn

    return wrap


def create_text_tower(config: TextConfig) -> nn.Module:
    """Build the registered text architecture a config names."""
    try:
        factory = _TEXT_ARCHS[config.arch]
    except KeyError:
        raise UnknownNameError(f"unknown text architecture {config.arch!r}; known: {sorted(_TEXT_ARCHS)}") from None
    return factory(embed_dim=config.embed_dim, pooling=config.pooling, **config.arch_args)


class _Block(nn.Module):
    """Pre-norm transformer block using ``scaled_dot_product_attention`` (exports to ONNX)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: Tensor, attn_bias: Tensor) -> Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(batch, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.norm2(x))


class TextTransformer(nn.Module):
    """Token ids and attention mask → ``[B, embed_dim]`` text features (unnormalised)."""

    def __init__(self, *, embed_dim: int, pooling: str = "eot", vocab_size: int = 4096, context_length: int = 32,
                 width: int = 256, layers: int = 4, heads: int = 4, causal: bool = True) -> None:
        super().__init__()
        if pooling not in ("eot", "mean"):
            raise ConfigError(f"text pooling must be 'eot' or 'mean', got {pooling!r}")
        if width % heads:
            raise ConfigError(f"text width {width} is not divisible by {heads} heads")
        self.pooling, self.causal = pooling, causal
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, width) * 0.01)
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width)
        self.projection = nn.Linear(width, embed_dim, bias=False)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def attention_bias(self, mask: Tensor) -> Tensor:
        """Additive ``[B, 1, L, L]`` bias: padding keys masked out, plus the causal triangle."""
        length = mask.shape[1]
        allowed = mask[:, None, None, :].bool()
        if self.causal:
            causal = torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
            allowed = allowed & causal
        # A padded query row that sees nothing would give NaN; let it see itself.
        allowed = allowed | torch.eye(length, dtype=torch.bool, device=mask.device)
        zero = torch.zeros((), dtype=self.positional_embedding.dtype, device=mask.device)
        return torch.where(allowed, zero, torch.finfo(zero.dtype).min)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        bias = self.attention_bias(mask)
        for block in self.blocks:
            x = block(x, bias)
        x = self.ln_final(x)
        if self.pooling == "eot":
            last = mask.sum(dim=1).clamp(min=1) - 1
            pooled = x[torch.arange(x.shape[0], device=x.device), last]
        else:
            weights = mask.unsqueeze(-1).to(x.dtype)
            pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.projection(pooled)


@register_text_arch("transformer")
def _transformer(*, embed_dim: int, pooling: str, **arch_args: Any) -> nn.Module:
    return TextTransformer(embed_dim=embed_dim, pooling=pooling, **arch_args)


class TextEncoder(nn.Module):
    """A text tower with its tokenizer: strings in, L2-normalised vectors out."""

    def __init__(self, config: TextConfig, tokenizer: Tokenizer, tower: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.tower = tower if tower is not None else create_text_tower(config)

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Texts → ``(ids, mask)`` tensors, truncated to the context length."""
        ids, mask = encode_texts(self.tokenizer, texts, self.config.context_length)
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Normalised ``[B, D]`` text embeddings."""
        return F.normalize(self.tower(ids, mask), dim=-1)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Strings → float32 ``[N, D]`` unit vectors."""
        self.eval()
        chunks = []
        for start in range(0, len(texts), batch_size):
            ids, mask = self.tokenize(texts[start : start + batch_size])
            chunks.append(self(ids, mask).float().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, self.config.embed_dim), np.float32)
