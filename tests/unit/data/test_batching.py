"""Batching invariants: every index once, token limit, determinism per (seed, epoch)."""

import random

import pytest
import torch

from transduce.config import TransduceError
from transduce.data.batching import pad_batch, token_batches


def lengths(n=500, seed=0):
    rng = random.Random(seed)
    return [rng.randint(1, 60) for _ in range(n)], [rng.randint(1, 60) for _ in range(n)]


def cost(batch, src, tgt):
    return (max(src[i] for i in batch) + max(tgt[i] for i in batch)) * len(batch)


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_index_once_and_limit(shuffle):
    src, tgt = lengths()
    src[7], tgt[7] = 900, 5  # longer than max_tokens: gets a batch of its own
    batches = token_batches(src, tgt, max_tokens=600, shuffle=shuffle, seed=3, epoch=1)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(src)))
    assert [7] in batches
    for b in batches:
        assert b == [7] or cost(b, src, tgt) <= 600


def test_determinism_and_epochs():
    src, tgt = lengths()
    a = token_batches(src, tgt, 800, seed=1, epoch=2)
    assert a == token_batches(src, tgt, 800, seed=1, epoch=2)
    assert a != token_batches(src, tgt, 800, seed=1, epoch=3)
    assert a != token_batches(src, tgt, 800, seed=2, epoch=2)


def test_unshuffled_is_sorted():
    src, tgt = lengths()
    batches = token_batches(src, tgt, 800, shuffle=False)
    flat = [i for b in batches for i in b]
    keys = [(src[i], tgt[i], i) for i in flat]
    assert keys == sorted(keys)


def test_bad_arguments():
    with pytest.raises(TransduceError):
        token_batches([1, 2], [1], 100)
    with pytest.raises(TransduceError):
        token_batches([1], [1], 0)
    assert token_batches([], [], 100) == []


def test_pad_batch():
    ids, mask = pad_batch([[5, 6, 7], [8], []], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[True] * 3, [True, False, False], [False] * 3]
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    empty_ids, empty_mask = pad_batch([])
    assert empty_ids.shape == (0, 0) and empty_mask.shape == (0, 0)
