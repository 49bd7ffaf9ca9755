"""Token embeddings and positional encodings.

Token embeddings stay plain ``nn.Embedding`` modules held by the encoder or
decoder (``module.embedding``) so :func:`transduce.models.seq2seq.build_model`
can tie them to the output projection or share them between encoder and
decoder by attribute assignment. Scaling is therefore a function applied at
lookup time, not a wrapper module that would hide the ``nn.Embedding``.

Both positional encodings take an ``offset`` (the position of the first new
token) so incremental decoding can add the encoding of position ``t`` to the
token it reads at step ``t``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from transduce.config import ConfigError


def build_token_embedding(
    vocab_size: int, dim: int, pad_id: int, std: float | None = None
) -> nn.Embedding:
    """An ``nn.Embedding(vocab_size, dim, padding_idx=pad_id)``.

    std: initialise weights from ``N(0, std^2)`` (Transformer: ``dim ** -0.5``, which
        together with :func:`embed_tokens`'s ``sqrt(dim)`` scaling gives unit-variance
        inputs and a well-scaled tied output projection); None keeps torch's ``N(0, 1)``.
    The padding row is zero so padding contributes nothing.
    """
    if vocab_size <= 0:
        raise ConfigError(f"vocabulary size must be positive, got {vocab_size}")
    emb = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
    if std is not None:
        nn.init.normal_(emb.weight, mean=0.0, std=std)
    with torch.no_grad():
        emb.weight[pad_id].zero_()
    return emb


def embed_tokens(embedding: nn.Embedding, ids: Tensor, scale: float = 1.0) -> Tensor:
    """Look up ``ids`` ``(B, T)`` -> ``(B, T, D)``, multiplied by ``scale``.

    The Transformer uses ``scale = sqrt(D)`` (Vaswani et al. 2017) so token
    vectors are not drowned by the positional encoding.
    """
    x = embedding(ids)
    return x * scale if scale != 1.0 else x


def embedding_scale(dim: int, enabled: bool) -> float:
    """``sqrt(dim)`` when ``enabled`` else 1."""
    return math.sqrt(dim) if enabled else 1.0


def sinusoidal_table(length: int, dim: int) -> Tensor:
    """The ``(length, dim)`` sine/cosine table of Vaswani et al. (2017).

    Even channels hold ``sin(pos / 10000^(2i/dim))``, odd channels the cosine.
    """
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: dim // 2])  # odd dim: one fewer cosine
    return table


class SinusoidalPositionalEncoding(nn.Module):
    """Adds fixed sinusoidal position encodings; no parameters.

    The table is a non-persistent buffer (not saved in checkpoints) and is
    recomputed on the fly for positions beyond ``max_positions``, so
    decoding is never limited by it.
    """

    def __init__(self, dim: int, max_positions: int = 1024) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("table", sinusoidal_table(max_positions, dim), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x ``(B, T, D)`` -> ``x + PE[offset : offset + T]``."""
        end = offset + x.size(1)
        table = self.table
        if end > table.size(0):
            table = sinusoidal_table(end, self.dim).to(x.device)
        return x + table[offset:end].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned vector per position ``0 .. max_positions - 1``."""

    def __init__(self, dim: int, max_positions: int = 1024, std: float = 0.02) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.weight = nn.Parameter(torch.randn(max_positions, dim) * std)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        """x ``(B, T, D)`` -> ``x + P[offset : offset + T]``."""
        end = offset + x.size(1)
        if end > self.max_positions:
            raise ConfigError(
                f"a sequence reached position {end} but learned positions stop at "
                f"max_positions={self.max_positions}; raise max_positions in the model config, "
                "shorten the inputs (data.max_src_len / max_tgt_len) or use "
                "positions: sinusoidal"
            )
        return x + self.weight[offset:end].to(x.dtype)


def build_positions(kind: str, dim: int, max_positions: int) -> nn.Module:
    """``"sinusoidal"`` or ``"learned"`` positional module of width ``dim``."""
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(dim, max_positions)
    if kind == "learned":
        return LearnedPositionalEmbedding(dim, max_positions)
    raise ConfigError(f"positions must be 'sinusoidal' or 'learned', got {kind!r}")


__all__ = [
    "LearnedPositionalEmbedding",
    "SinusoidalPositionalEncoding",
    "build_positions",
    "build_token_embedding",
    "embed_tokens",
    "embedding_scale",
    "sinusoidal_table",
]
