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
from zoo.errors import ConfigError
from zoo.naming import NameRegistry
from zoo.tokenizer import encode_texts

TextArch = Callable[..., nn.Module]
#: Text-tower constructors by architecture name; each takes ``embed_dim``, ``pooling`` and its
#: ``arch_args``. Filled by this module and by :mod:`zoo.text_bert`, imported at the end of this one.
TEXT_ARCHS: NameRegistry[TextArch] = NameRegistry("text architecture")


def create_text_tower(config: TextConfig) -> nn.Module:
    """Build the registered text architecture a config names."""
    factory = TEXT_ARCHS.get(config.arch)
    return factory(embed_dim=config.embed_dim, pooling=config.pooling, **config.arch_args)


class QuickGELU(nn.Module):
    """``x · sigmoid(1.702 x)``, the activation of OpenAI's original CLIP weights."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"gelu": nn.GELU, "quick_gelu": QuickGELU}


class _Block(nn.Module):
    """Pre-norm transformer block using ``scaled_dot_product_attention`` (exports to ONNX)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, activation: str = "gelu",
                 norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, eps=norm_eps)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, eps=norm_eps)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), ACTIVATIONS[activation](), nn.Linear(hidden, width))

    def forward(self, x: Tensor, attn_bias: Tensor) -> Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(batch, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.norm2(x))


class TextTransformer(nn.Module):
    """Token ids and attention mask → ``[B, embed_dim]`` text features (unnormalised).

    ``mlp_ratio``, ``activation`` (``gelu`` or ``quick_gelu``) and ``norm_eps`` exist so open_clip's
    text towers map onto this one weight for weight; the defaults are the original small tower's.
    ``eot`` pooling takes the last real token (the mask's), which is where open_clip's ``argmax`` of the
    token ids lands too, since ``<end_of_text>`` is both the last token and the highest id.
    """

    def __init__(self, *, embed_dim: int, pooling: str = "eot", vocab_size: int = 4096, context_length: int = 32,
                 width: int = 256, layers: int = 4, heads: int = 4, causal: bool = True, mlp_ratio: float = 4.0,
                 activation: str = "gelu", norm_eps: float = 1e-5) -> None:
        super().__init__()
        if pooling not in ("eot", "mean"):
            raise ConfigError(f"text pooling must be 'eot' or 'mean', got {pooling!r}")
        if width % heads:
            raise ConfigError(f"text width {width} is not divisible by {heads} heads")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"text activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.pooling, self.causal = pooling, causal
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.randn(context_length, width) * 0.01)
        self.blocks = nn.ModuleList(_Block(width, heads, mlp_ratio, activation, norm_eps) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width, eps=norm_eps)
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
        return self.projection(self.pooled(ids, mask))

    def pooled(self, ids: Tensor, mask: Tensor) -> Tensor:
        """The pooled ``[B, width]`` state before the projection (what a locked tower precomputes)."""
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
        return pooled


@TEXT_ARCHS.register("transformer")
def _transformer(*, embed_dim: int, pooling: str, **arch_args: Any) -> nn.Module:
    return TextTransformer(embed_dim=embed_dim, pooling=pooling, **arch_args)


def trim_padding(ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop the columns that are padding in every row; the towers give the same vectors, sooner.

    Positions are absolute and padding is masked, so trailing all-padding columns change nothing but
    the cost, which for short captions in a long context is most of it.
    """
    length = max(int(mask.sum(dim=1).max()) if mask.numel() else 1, 1)
    return ids[:, :length], mask[:, :length]


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
            ids, mask = trim_padding(*self.tokenize(texts[start : start + batch_size]))
            chunks.append(self(ids, mask).float().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, self.config.embed_dim), np.float32)


# Every text architecture is registered once this module is imported, whoever imports it first.
from zoo import text_bert  # noqa: E402, F401
