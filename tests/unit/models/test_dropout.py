"""Dropout drawn 16 bits per element: the right drop rate on every element position,
an unbiased scale, the gradient of its own mask, seeded, and F.dropout where it
does not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transduce.models.dropout import SMALL, Dropout, dropout

N = 1 << 20  # elements: the drop rate's standard error is under 3e-4


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_drop_rate_and_scale(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(N)
    y = dropout(x, p)
    kept = y != 0
    q = round(p * 65536)
    assert torch.all(y[kept] == 65536 / (65536 - q))  # kept elements scaled exactly
    sigma = (p * (1 - p) / N) ** 0.5
    assert abs((~kept).float().mean().item() - p) < 6 * sigma
    # each of the four 16-bit fields of a 64-bit draw drops at the same rate (a draw
    # that left a sign bit at zero would bias one of them)
    for field in range(4):
        rate = (~kept[field::4]).float().mean().item()
        assert abs(rate - p) < 6 * (4**0.5) * sigma, (field, rate)
    assert abs(y.mean().item() - 1.0) < 6 * sigma / (1 - p)  # unbiased


def test_gradient_is_the_mask() -> None:
    torch.manual_seed(1)
    x = torch.randn(64, 512, requires_grad=True)
    y = dropout(x, 0.25)
    g = torch.randn_like(y)
    y.backward(g)
    scale = 65536 / (65536 - 16384)
    mask = (y != 0).float() * scale
    torch.testing.assert_close(y, x.detach() * mask)
    torch.testing.assert_close(x.grad, g * mask)


def test_seeded_and_follows_the_generator() -> None:
    x = torch.randn(4, 8192)
    torch.manual_seed(3)
    a = dropout(x, 0.1)
    b = dropout(x, 0.1)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.1), a)
    assert not torch.equal(a, b)  # the generator advanced
    state = torch.get_rng_state()
    c = dropout(x, 0.1)
    torch.set_rng_state(state)
    assert torch.equal(dropout(x, 0.1), c)  # a checkpoint's saved state replays it


def test_odd_sizes_shapes_and_dtypes() -> None:
    torch.manual_seed(4)
    x = torch.randn(3, 4099, 3)[:, ::2]  # not a multiple of four, not contiguous
    y = dropout(x, 0.2)
    assert y.shape == x.shape
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] * (65536 / (65536 - 13107)))
    h = torch.randn(64, 512, dtype=torch.bfloat16)
    assert dropout(h, 0.1).dtype == torch.bfloat16


def test_where_it_does_not_apply() -> None:
    x = torch.randn(64, 512)
    assert dropout(x, 0.1, training=False) is x
    assert dropout(x, 0.0) is x
    small = torch.randn(SMALL - 1)
    torch.manual_seed(5)
    expected = F.dropout(small, 0.1)
    torch.manual_seed(5)
    assert torch.equal(dropout(small, 0.1), expected)  # F.dropout below SMALL elements
    torch.manual_seed(6)
    expected = F.dropout(x, 1 - 1e-6)
    torch.manual_seed(6)
    assert torch.equal(dropout(x, 1 - 1e-6), expected)  # beyond the 16-bit grid


def test_module_is_nn_dropout() -> None:
    m = Dropout(0.5)
    assert isinstance(m, torch.nn.Dropout) and m.state_dict() == {}
    x = torch.ones(128, 128)
    m.eval()
    assert m(x) is x
    m.train()
    torch.manual_seed(7)
    y = m(x)
    assert set(y.unique().tolist()) == {0.0, 2.0}
