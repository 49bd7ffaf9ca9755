"""Token embeddings and positional encodings."""

from __future__ import annotations

import math

import pytest
import torch

from transduce.config import ConfigError
from transduce.models.embeddings import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    build_positions,
    build_token_embedding,
    embed_tokens,
    embedding_scale,
    sinusoidal_table,
)


def test_token_embedding_padding_and_scale() -> None:
    emb = build_token_embedding(10, 4, pad_id=0, std=0.5)
    assert emb.padding_idx == 0
    assert torch.all(emb.weight[0] == 0)
    ids = torch.tensor([[3, 0]])
    torch.testing.assert_close(embed_tokens(emb, ids, 2.0), emb(ids) * 2)
    assert embedding_scale(16, True) == 4.0 and embedding_scale(16, False) == 1.0
    with pytest.raises(ConfigError):
        build_token_embedding(0, 4, 0)


def test_sinusoidal_values() -> None:
    table = sinusoidal_table(50, 6)
    assert torch.all(table[0, 0::2] == 0) and torch.all(table[0, 1::2] == 1)
    torch.testing.assert_close(table[7, 2], torch.tensor(math.sin(7 / 10000 ** (2 / 6))))
    torch.testing.assert_close(table[7, 3], torch.tensor(math.cos(7 / 10000 ** (2 / 6))))
    assert sinusoidal_table(4, 5).shape == (4, 5)  # odd widths work


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_offset_equals_slice_of_full(kind: str) -> None:
    torch.manual_seed(0)
    pos = build_positions(kind, 8, 16)
    x = torch.randn(2, 10, 8)
    full = pos(x)
    torch.testing.assert_close(pos(x[:, 4:7], offset=4), full[:, 4:7])
    torch.testing.assert_close(pos(x[:, 9:], offset=9), full[:, 9:])


def test_sinusoidal_extends_beyond_max_positions() -> None:
    small, big = SinusoidalPositionalEncoding(8, 4), SinusoidalPositionalEncoding(8, 64)
    x = torch.zeros(1, 3, 8)
    torch.testing.assert_close(small(x, offset=10), big(x, offset=10))
    assert "table" not in small.state_dict()  # recomputed, not saved


def test_learned_positions_limit_is_a_clear_error() -> None:
    pos = LearnedPositionalEmbedding(8, 4)
    with pytest.raises(ConfigError, match="max_positions"):
        pos(torch.zeros(1, 2, 8), offset=3)
    with pytest.raises(ConfigError):
        build_positions("rotary", 8, 4)
