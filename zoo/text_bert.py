"""A BERT text tower (``bert``), so a pretrained sentence encoder such as MiniLM can be CLIP's text side.

The module tree mirrors Hugging Face's ``BertModel`` key for key (``embeddings.word_embeddings``,
``encoder.layer.N.attention.self.query`` ...) under ``bert.``, so a ``model.safetensors`` from the
Hub loads strictly without a renaming table. Pooling is what sentence-transformers does for
``all-MiniLM-L6-v2``: the mean of the last hidden states over real tokens (``pooling="mean"``), or
the ``[CLS]`` state (``pooling="eot"`` is not meaningful for a bidirectional encoder and is refused).
A bias-free linear ``projection`` maps the pooled state into the joint space, or is the identity
when ``projection=False`` (the plain sentence embedding).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.errors import ConfigError
from zoo.text import TEXT_ARCHS

POOLINGS = ("mean", "cls")


class _SelfAttention(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)


class _DenseNorm(nn.Module):
    def __init__(self, fan_in: int, width: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(fan_in, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)


class _Attention(nn.Module):
    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.self = _SelfAttention(width)
        self.output = _DenseNorm(width, width, eps)


class _Intermediate(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, hidden)


class _Layer(nn.Module):
    """Post-norm BERT layer: attention, add & norm, GELU MLP, add & norm."""

    def __init__(self, width: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.attention = _Attention(width, eps)
        self.intermediate = _Intermediate(width, hidden)
        self.output = _DenseNorm(hidden, width, eps)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        batch, length, width = x.shape
        attn = self.attention.self

        def heads(t: Tensor) -> Tensor:
            return t.reshape(batch, length, self.heads, width // self.heads).transpose(1, 2)

        mixed = F.scaled_dot_product_attention(heads(attn.query(x)), heads(attn.key(x)), heads(attn.value(x)),
                                               attn_mask=bias)
        mixed = mixed.transpose(1, 2).reshape(batch, length, width)
        x = self.attention.output.LayerNorm(x + self.attention.output.dense(mixed))
        hidden = F.gelu(self.intermediate.dense(x))
        return self.output.LayerNorm(x + self.output.dense(hidden))


class _Embeddings(nn.Module):
    def __init__(self, vocab_size: int, width: int, max_positions: int, type_vocab_size: int, eps: float) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab_size, width)
        self.position_embeddings = nn.Embedding(max_positions, width)
        self.token_type_embeddings = nn.Embedding(type_vocab_size, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)

    def forward(self, ids: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class _Encoder(nn.Module):
    def __init__(self, layers: int, width: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(width, heads, hidden, eps) for _ in range(layers))


class _Bert(nn.Module):
    """``BertModel`` without its pooler (sentence-transformers never uses it)."""

    def __init__(self, vocab_size: int, width: int, layers: int, heads: int, hidden: int, max_positions: int,
                 type_vocab_size: int, eps: float) -> None:
        super().__init__()
        self.embeddings = _Embeddings(vocab_size, width, max_positions, type_vocab_size, eps)
        self.encoder = _Encoder(layers, width, heads, hidden, eps)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        x = self.embeddings(ids)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        bias = torch.where(mask[:, None, None, :].bool(), zero, torch.finfo(x.dtype).min)
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return x


class BertTower(nn.Module):
    """Token ids and mask → ``[B, embed_dim]`` text features (unnormalised), BERT inside.

    Args:
        embed_dim: Width of the joint space (the projection's output).
        pooling: ``mean`` over real tokens (sentence-transformers) or ``cls``.
        vocab_size, width, layers, heads, intermediate, max_positions, type_vocab_size, norm_eps:
            Hugging Face's ``BertConfig`` fields under our names; stored in the entry's config.
        context_length: Longest token sequence the tokenizer produces (≤ ``max_positions``).
        projection: Whether to add the linear projection (False: ``embed_dim`` must equal ``width``).
    """

    def __init__(self, *, embed_dim: int, pooling: str = "mean", vocab_size: int = 30522, width: int = 384,
                 layers: int = 6, heads: int = 12, intermediate: int = 1536, max_positions: int = 512,
                 type_vocab_size: int = 2, norm_eps: float = 1e-12, context_length: int = 64,
                 projection: bool = True) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"bert text pooling must be one of {POOLINGS}, got {pooling!r}")
        if width % heads:
            raise ConfigError(f"bert width {width} is not divisible by {heads} heads")
        if context_length > max_positions:
            raise ConfigError(f"context_length {context_length} exceeds max_positions {max_positions}")
        if not projection and embed_dim != width:
            raise ConfigError(f"without a projection embed_dim must equal width ({width}), got {embed_dim}")
        self.pooling = pooling
        self.bert = _Bert(vocab_size, width, layers, heads, intermediate, max_positions, type_vocab_size, norm_eps)
        self.projection: nn.Module = nn.Linear(width, embed_dim, bias=False) if projection else nn.Identity()

    def pooled(self, ids: Tensor, mask: Tensor) -> Tensor:
        """The sentence embedding before projection: mean (or ``[CLS]``) of the last hidden states."""
        hidden = self.bert(ids, mask)
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        return self.projection(self.pooled(ids, mask))


@TEXT_ARCHS.register("bert")
def _bert(*, embed_dim: int, pooling: str, **arch_args: Any) -> nn.Module:
    return BertTower(embed_dim=embed_dim, pooling=pooling, **arch_args)
