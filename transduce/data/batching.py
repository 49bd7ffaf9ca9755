"""Length-bucketed token batching and padding.

Examples of similar length share a batch so little compute goes to padding. The
batch list for an epoch is a pure function of (lengths, max_tokens, seed, epoch):
training that resumes at batch k of epoch e sees exactly the batches it would have.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from transduce.config import TransduceError


def _rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch) & 0xFFFFFFFF])


def token_batches(
    src_lens: Sequence[int],
    tgt_lens: Sequence[int],
    max_tokens: int,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    as_arrays: bool = False,
) -> list[list[int]] | list[np.ndarray]:
    """Group example indices into batches of at most ``max_tokens`` padded tokens.

    A batch of n examples costs ``max(src_len) * n + max(tgt_len) * n`` (pass lengths
    as they will be padded, e.g. with bos/eos). Examples are sorted by (src, tgt)
    length; with ``shuffle`` ties are broken randomly and the batch order is shuffled,
    both from (seed, epoch). An example longer than ``max_tokens`` gets a batch of its
    own. Without ``shuffle`` the order is sorted and fully deterministic (for evaluation).

    Returns a list of batches, each a list of indices into the length arrays (with
    ``as_arrays``, an int64 array each: what training on millions of examples wants).
    """
    src = np.asarray(src_lens, dtype=np.int64).reshape(-1)
    tgt = np.asarray(tgt_lens, dtype=np.int64).reshape(-1)
    if len(src) != len(tgt):
        raise TransduceError(f"token_batches: {len(src)} source but {len(tgt)} target lengths")
    if max_tokens <= 0:
        raise TransduceError(f"batch size in tokens must be positive, got {max_tokens}")
    rng = _rng(seed, epoch) if shuffle else None
    order = rng.permutation(len(src)) if rng is not None else np.arange(len(src))
    # lexsort sorts by the last key first; it is stable, so the permutation breaks ties.
    order = order[np.lexsort((tgt[order], src[order]))]

    # Greedy packing along the sorted order; only batch boundaries are kept in Python,
    # so a corpus of millions of examples costs its index arrays, not lists of ints.
    bounds: list[int] = []
    size = max_src = max_tgt = 0
    src_sorted, tgt_sorted = src[order], tgt[order]
    chunk = 1 << 20  # lists of Python ints for at most this many examples at a time
    for start in range(0, len(order), chunk):
        pairs = zip(
            src_sorted[start : start + chunk].tolist(), tgt_sorted[start : start + chunk].tolist()
        )
        for pos, (ls, lt) in enumerate(pairs, start):
            s, t = max(max_src, ls), max(max_tgt, lt)
            if size and (s + t) * (size + 1) > max_tokens:
                bounds.append(pos)
                size, s, t = 0, ls, lt
            size += 1
            max_src, max_tgt = s, t
    batches = np.split(order, bounds) if len(order) else []
    if rng is not None:
        batches = [batches[j] for j in rng.permutation(len(batches)).tolist()]
    return batches if as_arrays else [b.tolist() for b in batches]


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id sequences -> ``(ids (B, L) long, mask (B, L) bool, True = real token)``."""
    lengths = [len(s) for s in seqs]
    width = max(lengths, default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(seqs):
        if len(seq):
            ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(lengths, dtype=torch.long).unsqueeze(1)
    return ids, mask.reshape(len(seqs), width)
