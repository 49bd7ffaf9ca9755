"""Label-smoothed cross entropy.

With smoothing ``eps`` and vocabulary size ``V``, the target distribution puts
``1 - eps`` on the reference token and spreads ``eps`` evenly over the other
``V - 1`` tokens (``eps / (V - 1)`` each), so ``eps`` is exactly the probability
mass taken away from the reference. (``torch.nn.functional.cross_entropy``'s
``label_smoothing`` spreads ``eps`` over all ``V`` tokens instead.) Per token::

    loss = (1 - eps) * nll + eps / (V - 1) * sum_{j != y} -log p_j

Positions whose target is ``pad_id`` count nothing.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

# Auxiliary loss terms (coverage, doubly stochastic attention, CTC) are registered by
# name in transduce.registry, below the models and tasks that define them; the
# trainer reads them from here.
from transduce.registry import AUX_LOSSES, AuxLoss, build_aux_losses, register_aux_loss


def label_smoothed_nll(
    logits: Tensor, target: Tensor, pad_id: int, smoothing: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Summed label-smoothed loss over the non-padding target tokens.

    Args:
        logits: ``(B, T, V)`` unnormalised scores (any float dtype; computed in float32).
        target: ``(B, T)`` token ids; ``pad_id`` marks padding.
        pad_id: the padding id, ignored.
        smoothing: ``eps`` in ``[0, 1)``; 0 gives plain cross entropy.

    Returns:
        ``(loss_sum, nll_sum, n_tokens)``: 0-dim tensors; the first two are float32
        sums (``loss_sum`` carries the gradient, ``nll_sum`` is detached, for
        perplexity), ``n_tokens`` the int64 count of non-padding targets. Divide
        by ``n_tokens`` yourself (summed over accumulated batches) for a mean.
    """
    if logits.shape[:-1] != target.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match: "
            "expected (B, T, V) and (B, T)"
        )
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    mask = target.ne(pad_id)  # (B, T)
    safe_target = target.masked_fill(~mask, 0)  # pad_id may be outside [0, V)
    loss, nll = _SmoothedNLL.apply(logits.float(), safe_target, mask, smoothing)
    return loss, nll, mask.sum()


class _SmoothedNLL(torch.autograd.Function):
    """The loss above with a hand-written backward that makes one ``(B, T, V)`` tensor.

    Autograd through ``log_softmax -> gather -> sum`` keeps the log-softmax and
    builds three more vocabulary-sized tensors in the backward (the gather's
    zero-filled scatter, the sum's expansion, their sum) before the log-softmax's
    own backward. The gradient is known in closed form: with ``p = softmax(z)``
    and the smoothed target distribution ``q`` (``1 - eps`` on ``y``,
    ``eps / (V - 1)`` elsewhere; it sums to one), ``d loss / d z = p - q`` per
    real token, so the backward is ``exp(log_softmax)`` shifted and scaled in place,
    plus one scatter on the targets.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, logits: Tensor, target: Tensor, mask: Tensor, smoothing: float
    ) -> tuple[Tensor, Tensor]:
        vocab = logits.size(-1)
        lprobs = F.log_softmax(logits, dim=-1)  # (B, T, V) float32
        nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, T)
        nll = nll.masked_fill(~mask, 0.0)
        off = smoothing / (vocab - 1) if vocab > 1 else 0.0  # q on every non-target token
        if off > 0.0:
            total = -lprobs.sum(dim=-1).masked_fill(~mask, 0.0)  # (B, T) sum over all V
            loss = (1.0 - smoothing) * nll + off * (total - nll)
        else:
            loss = nll
        ctx.save_for_backward(lprobs, target, mask)
        ctx.off, ctx.on = off, (1.0 - smoothing) if off > 0.0 else 1.0
        ctx.mark_non_differentiable(nll)
        return loss.sum(), nll.sum()

    @staticmethod
    def backward(ctx: Any, grad_loss: Tensor, _grad_nll: Tensor) -> tuple[Tensor | None, ...]:
        lprobs, target, mask = ctx.saved_tensors
        scale = (grad_loss * mask).to(lprobs.dtype).unsqueeze(-1)  # (B, T, 1), 0 on padding
        grad = lprobs.exp()  # p, (B, T, V): the only new vocabulary-sized tensor
        if ctx.off > 0.0:
            grad.sub_(ctx.off)
        grad.mul_(scale)  # (p - off) * g
        # At the target q is `on`, not `off`: subtract the difference there.
        grad.scatter_add_(-1, target.unsqueeze(-1), -(ctx.on - ctx.off) * scale)
        return grad, None, None, None


__all__ = [
    "AUX_LOSSES",
    "AuxLoss",
    "build_aux_losses",
    "label_smoothed_nll",
    "register_aux_loss",
]
