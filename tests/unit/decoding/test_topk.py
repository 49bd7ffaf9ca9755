"""Block top-k and argmax: exactly torch's values, and torch.argmax's tie rule."""

from __future__ import annotations

import pytest
import torch

from transduce.decoding.topk import BLOCK, argmax_rows, topk_rows


@pytest.mark.parametrize("n", [BLOCK * 64, BLOCK * 64 + 37, 32000, 4 * 32000])
@pytest.mark.parametrize("k", [1, 8, 10])
def test_topk_equals_torch(n: int, k: int) -> None:
    g = torch.Generator().manual_seed(n + k)
    x = torch.randn(6, n, generator=g)
    x[1, -5:] += 10  # the best values in the tail past the last whole block
    x[2, :k] += 10  # or all in the first block
    x[3].fill_(-torch.inf)
    x[3, 7 * BLOCK + 3] = 0.0  # one finite value; the rest tie at -inf
    values, index = topk_rows(x, k)
    expected_values, expected_index = x.topk(k, dim=1)
    assert torch.equal(values, expected_values)
    keep = torch.ones(6, dtype=torch.bool)
    keep[3] = False  # -inf ties: any k-1 of them are right
    assert torch.equal(index[keep], expected_index[keep])
    assert torch.equal(x.gather(1, index), values)  # the indices point at the values
    assert index[3, 0].item() == 7 * BLOCK + 3


@pytest.mark.parametrize("n", [BLOCK * 8, BLOCK * 8 + 100, 32000])
def test_argmax_equals_torch_ties_included(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    x = torch.randn(7, n, generator=g)
    x[1].zero_()  # everything ties: index 0
    x[2, 3 * BLOCK + 1] = x[2, -1] = 99.0  # a tie between a block and the tail
    x[3, -1] = 99.0  # the tail alone holds the maximum
    x[4, BLOCK + 9] = x[4, 2 * BLOCK + 2] = 99.0  # a tie between two blocks
    x[5, 0] = -torch.inf
    x[6].fill_(-torch.inf)
    assert torch.equal(argmax_rows(x), x.argmax(dim=1))


def test_small_rows_take_torch() -> None:
    x = torch.randn(3, BLOCK)
    assert torch.equal(topk_rows(x, 2)[1], x.topk(2, dim=1)[1])
    assert torch.equal(argmax_rows(x), x.argmax(dim=1))
