"""Label-smoothed NLL against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transduce.training.loss import label_smoothed_nll


def test_hand_computed_single_token() -> None:
    # V = 3, uniform-free logits with known log-softmax.
    logits = torch.tensor([[[0.0, math.log(2.0), math.log(5.0)]]])  # p = [1/8, 2/8, 5/8]
    target = torch.tensor([[2]])
    eps = 0.1
    loss, nll, n = label_smoothed_nll(logits, target, pad_id=-1, smoothing=eps)
    lp = [math.log(1 / 8), math.log(2 / 8), math.log(5 / 8)]
    expected_nll = -lp[2]
    expected = (1 - eps) * -lp[2] + eps / 2 * (-lp[0] - lp[1])
    assert nll.item() == pytest.approx(expected_nll, rel=1e-6)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert n.item() == 1


def test_padding_counts_nothing() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    target = torch.tensor([[1, 2, 3, 0], [4, 0, 0, 0]])  # pad_id 0
    loss, nll, n = label_smoothed_nll(logits, target, pad_id=0, smoothing=0.2)
    assert n.item() == 4
    # Same value when the padded positions hold wildly different logits.
    noisy = logits.clone()
    noisy[target == 0] = 1e4 * torch.randn_like(noisy[target == 0])
    loss2, nll2, _ = label_smoothed_nll(noisy, target, pad_id=0, smoothing=0.2)
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-6)
    assert nll2.item() == pytest.approx(nll.item(), rel=1e-6)
    # And equal to the sum over the real tokens computed one by one.
    lp = F.log_softmax(logits, dim=-1)
    expected = 0.0
    for b, t in [(0, 0), (0, 1), (0, 2), (1, 0)]:
        y = target[b, t].item()
        others = -(lp[b, t].sum() - lp[b, t, y]).item()
        expected += 0.8 * -lp[b, t, y].item() + 0.2 / 6 * others
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_no_smoothing_equals_cross_entropy_sum() -> None:
    torch.manual_seed(1)
    logits = torch.randn(3, 5, 11, requires_grad=True)
    target = torch.randint(1, 11, (3, 5))
    target[0, 3:] = 0
    loss, nll, n = label_smoothed_nll(logits, target, pad_id=0, smoothing=0.0)
    ref = F.cross_entropy(
        logits.reshape(-1, 11), target.reshape(-1), ignore_index=0, reduction="sum"
    )
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    assert nll.item() == pytest.approx(ref.item(), rel=1e-6)
    assert n.item() == 13
    loss.backward()
    assert logits.grad is not None and logits.grad[0, 3:].abs().sum() == 0


def test_pad_id_outside_vocab_and_bf16() -> None:
    logits = torch.randn(1, 3, 5).to(torch.bfloat16)
    target = torch.tensor([[1, 2, -100]])
    loss, _, n = label_smoothed_nll(logits, target, pad_id=-100, smoothing=0.1)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and n.item() == 2


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="do not match"):
        label_smoothed_nll(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), 0, 0.1)


def test_aux_losses_are_looked_up_by_name():
    from transduce.config import ConfigError
    from transduce.training.loss import AUX_LOSSES, build_aux_losses, register_aux_loss

    @register_aux_loss("test_zero")
    def zero(model, batch, enc_out, attn):
        return torch.zeros(())

    try:
        [(name, weight, fn)] = build_aux_losses({"test_zero": 2})
        assert (name, weight, fn) == ("test_zero", 2.0, zero)
        with pytest.raises(ConfigError, match="unknown loss 'nope'"):
            build_aux_losses({"nope": 1.0})
    finally:
        AUX_LOSSES.pop("test_zero")


def _autograd_reference(logits, target, pad_id, eps):
    """The loss written with autograd only (what the hand-written backward replaces)."""
    mask = target.ne(pad_id)
    lp = F.log_softmax(logits.float(), dim=-1)
    nll = -lp.gather(-1, target.masked_fill(~mask, 0).unsqueeze(-1)).squeeze(-1)
    nll = nll.masked_fill(~mask, 0.0)
    total = -lp.sum(-1).masked_fill(~mask, 0.0)
    vocab = logits.size(-1)
    return ((1 - eps) * nll + eps / (vocab - 1) * (total - nll)).sum() if eps > 0 else nll.sum()


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_hand_written_backward_equals_autograd(eps: float) -> None:
    torch.manual_seed(2)
    logits = (3 * torch.randn(3, 4, 9)).requires_grad_(True)
    target = torch.randint(1, 9, (3, 4))
    target[1, 2:] = 0  # padding
    loss, _, _ = label_smoothed_nll(logits, target, pad_id=0, smoothing=eps)
    (2.5 * loss).backward()
    ref_logits = logits.detach().clone().requires_grad_(True)
    ref = _autograd_reference(ref_logits, target, 0, eps)
    (2.5 * ref).backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(logits.grad, ref_logits.grad, rtol=1e-5, atol=1e-6)
    assert logits.grad[1, 2:].abs().sum() == 0  # padding gets no gradient


def test_hand_written_backward_gradcheck() -> None:
    torch.manual_seed(3)
    target = torch.tensor([[1, 4, 0], [2, 0, 0]])

    def fn(z):
        return label_smoothed_nll(z, target, pad_id=0, smoothing=0.2)[0]

    # float32 inside (the loss computes in float32), so a loose tolerance.
    z = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (z,), eps=1e-3, atol=1e-3, rtol=1e-3)
