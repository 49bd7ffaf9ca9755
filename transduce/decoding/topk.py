"""Row-wise top-k and argmax over vocabulary-wide rows, faster on the CPU.

``torch.topk`` and ``torch.argmax`` on the CPU compare one element at a time: picking
the best 8 of 4 x 32,000 candidates for each of 32 sentences (beam 4, base model) takes
3.5 ms a step, as long as the model's output projection in int8. A block maximum is
vectorized and about 20x faster per element. So a row is cut into blocks of
:data:`BLOCK` values, each block's maximum is taken, and only the ``k`` blocks with the
largest maxima are searched: every one of the ``k`` best values lies in one of them
(a block holding one has a maximum at least that large, and at most ``k`` blocks can
beat it). Beam 4 on that shape: 3.5 -> 0.6 ms; argmax of ``(32, 32,000)``: 0.45 ->
0.16 ms (2 threads).

The values are exactly ``torch.topk``'s, best first. Among exactly equal values the
order of the indices may differ from ``torch.topk``'s, which leaves it unspecified;
:func:`argmax_rows` keeps ``torch.argmax``'s rule (the first index of the maximum).
Rows too short to gain, and tensors on other devices, take the torch functions.
"""

from __future__ import annotations

import torch
from torch import Tensor

BLOCK = 512


def _blocks(x: Tensor, k: int) -> int:
    """How many whole blocks to search by, or 0 where the plain torch function is used."""
    if x.device.type != "cpu" or x.dim() != 2:
        return 0
    n = x.size(1) // BLOCK
    return n if n >= 4 * k else 0


def topk_rows(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``x.topk(k, dim=1)`` for ``x`` ``(B, N)``: values and indices ``(B, k)``, best first."""
    n = _blocks(x, k)
    if not n:
        return x.topk(k, dim=1)
    rows = x.size(0)
    whole = n * BLOCK
    blocks = x[:, :whole].reshape(rows, n, BLOCK)
    best_blocks = blocks.amax(dim=2).topk(k, dim=1).indices  # (B, k)
    offsets = torch.arange(BLOCK, device=x.device)
    values = blocks.gather(1, best_blocks.unsqueeze(2).expand(rows, k, BLOCK)).view(rows, -1)
    index = (best_blocks.unsqueeze(2) * BLOCK + offsets).view(rows, -1)
    if whole < x.size(1):  # the tail that fills no whole block is always searched
        values = torch.cat([values, x[:, whole:]], dim=1)
        tail = torch.arange(whole, x.size(1), device=x.device).expand(rows, -1)
        index = torch.cat([index, tail], dim=1)
    top, where = values.topk(k, dim=1)
    return top, index.gather(1, where)


def argmax_rows(x: Tensor) -> Tensor:
    """``x.argmax(dim=1)`` for ``x`` ``(B, N)``: the first index of each row's maximum."""
    n = _blocks(x, 1)
    if not n:
        return x.argmax(dim=1)
    rows = x.size(0)
    whole = n * BLOCK
    blocks = x[:, :whole].reshape(rows, n, BLOCK)
    block_max = blocks.amax(dim=2)  # (B, n)
    first = block_max.argmax(dim=1)  # the first block that holds the row's maximum
    inside = blocks[torch.arange(rows, device=x.device), first].argmax(dim=1)
    best = first * BLOCK + inside
    if whole < x.size(1):  # the tail wins only with a strictly larger value
        tail = x[:, whole:]
        tail_best = tail.argmax(dim=1)
        tail_max = tail.gather(1, tail_best.unsqueeze(1)).squeeze(1)
        head_max = block_max.gather(1, first.unsqueeze(1)).squeeze(1)
        best = torch.where(tail_max > head_max, whole + tail_best, best)
    return best


__all__ = ["BLOCK", "argmax_rows", "topk_rows"]
