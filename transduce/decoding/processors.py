"""Logit processors: rules that reshape next-token log-probs before a search picks.

A processor is any callable ``processor(log_probs, prefix) -> log_probs`` where

* ``log_probs`` is ``(N, V)``: one row per hypothesis being extended (``N`` is
  the batch, the batch times the beam, or the batch times the samples),
* ``prefix`` is ``(N, t)`` long: the tokens generated so far, without bos
  (``t`` is the same for every row; step ``t`` picks token number ``t + 1``).

Processors work on log-probs, not raw logits, and do not renormalize: a search
adds the processed value of the chosen token to the hypothesis score. Rules
that only forbid tokens (:class:`MinLength`, :class:`NoRepeatNGram`,
:class:`ForbidTokens`) therefore leave the score of every allowed hypothesis
equal to the model's log-probability of it. They return new tensors and never
modify their input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

LogitsProcessor = Callable[[Tensor, Tensor], Tensor]


class MinLength:
    """Forbid eos while fewer than ``min_len`` tokens (eos not counted) exist."""

    def __init__(self, min_len: int, eos_id: int = 3) -> None:
        self.min_len = min_len
        self.eos_id = eos_id

    def __call__(self, log_probs: Tensor, prefix: Tensor) -> Tensor:
        if prefix.size(1) >= self.min_len:
            return log_probs
        log_probs = log_probs.clone()
        log_probs[:, self.eos_id] = -torch.inf
        return log_probs


class NoRepeatNGram:
    """Forbid any token that would complete an ``n``-gram already in the prefix."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"no_repeat_ngram must be >= 1, got {n}")
        self.n = n

    def __call__(self, log_probs: Tensor, prefix: Tensor) -> Tensor:
        n, t = self.n, prefix.size(1)
        if t < n:  # no complete n-gram yet, nothing to repeat
            return log_probs
        grams = prefix.unfold(1, n, 1)  # (N, t - n + 1, n): every n-gram so far
        last = prefix[:, t - n + 1 :]  # (N, n - 1): what the next n-gram starts with
        match = (grams[:, :, :-1] == last.unsqueeze(1)).all(-1)  # (N, t - n + 1)
        # scatter_add, not scatter: the same token can sit at matching and
        # non-matching positions, and scatter keeps an arbitrary one of them.
        banned = torch.zeros_like(log_probs).scatter_add_(1, grams[:, :, -1], match.to(log_probs))
        return log_probs.masked_fill(banned > 0, -torch.inf)


class RepetitionPenalty:
    """CTRL's repetition penalty (Keskar et al., 2019) on tokens already generated.

    A seen token's value ``x`` becomes ``x * penalty`` if ``x < 0`` else
    ``x / penalty``; ``penalty > 1`` discourages repeats. On log-probs (always
    ``<= 0``) this multiplies them by ``penalty``.
    """

    def __init__(self, penalty: float) -> None:
        if penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
        self.penalty = penalty

    def __call__(self, log_probs: Tensor, prefix: Tensor) -> Tensor:
        if prefix.size(1) == 0 or self.penalty == 1.0:
            return log_probs
        seen = torch.zeros_like(log_probs, dtype=torch.bool).scatter_(1, prefix, True)  # (N, V)
        penalized = torch.where(log_probs < 0, log_probs * self.penalty, log_probs / self.penalty)
        return torch.where(seen, penalized, log_probs)


class ForbidTokens:
    """Never generate the given ids (e.g. pad, bos or unk)."""

    def __init__(self, ids: Sequence[int]) -> None:
        self.ids = list(ids)

    def __call__(self, log_probs: Tensor, prefix: Tensor) -> Tensor:
        log_probs = log_probs.clone()
        log_probs[:, self.ids] = -torch.inf
        return log_probs


class SuppressTokens:
    """Whisper's token suppression: the given ids get ``-inf`` *logits*, before the
    softmax, so the remaining tokens' log-probs are renormalized (as CTranslate2 and
    openai-whisper do). ``at_step``: only when exactly that many tokens precede
    (e.g. the prompt length, for the first generated token); None = every step.

    ``on_logits = True`` tells :func:`next_token_log_probs` to run it before the softmax.
    """

    on_logits = True

    def __init__(self, ids: Sequence[int], at_step: int | None = None) -> None:
        self.ids = sorted(set(int(i) for i in ids))
        self.at_step = at_step

    def __call__(self, logits: Tensor, prefix: Tensor) -> Tensor:
        if not self.ids or (self.at_step is not None and prefix.size(1) != self.at_step):
            return logits
        logits = logits.clone()
        logits[:, self.ids] = -torch.inf
        return logits


def build_processors(
    min_len: int = 0,
    no_repeat_ngram: int = 0,
    repetition_penalty: float = 1.0,
    forbid_ids: Sequence[int] = (),
    eos_id: int = 3,
) -> list[LogitsProcessor]:
    """The processors a decode config asks for, in the order they are applied.

    ``0`` / ``1.0`` / ``()`` switch a rule off. The penalty comes first so the
    masks that follow always win.
    """
    processors: list[LogitsProcessor] = []
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(repetition_penalty))
    if no_repeat_ngram > 0:
        processors.append(NoRepeatNGram(no_repeat_ngram))
    if forbid_ids:
        processors.append(ForbidTokens(forbid_ids))
    if min_len > 0:
        processors.append(MinLength(min_len, eos_id))
    return processors


def next_token_log_probs(
    logits: Tensor,
    prefix: Tensor,
    processors: Sequence[LogitsProcessor],
    at_max_len: Tensor,
    eos_id: int,
) -> Tensor:
    """Turn a decoder step into the log-probs a search picks from.

    logits: ``(N, V)`` the decoder's output for the next token.
    prefix: ``(N, t)`` tokens generated so far (no bos).
    at_max_len: ``(N,)`` bool, rows that have reached their length limit: for
        them only eos is allowed, with the model's own log-prob (this wins over
        every processor, min_len included).
    Processors marked ``on_logits`` (:class:`SuppressTokens`) run on the logits,
    before the softmax; the others on the log-probs.
    Returns ``(N, V)`` float32 log-probs, ``-inf`` where a token is forbidden.

    Every tensor here is this function's own, so the rules it applies itself
    (``min_len``, the length limit) write in place instead of making a new
    ``(N, V)`` tensor each step.
    """
    logits = logits.float()
    for processor in processors:
        if getattr(processor, "on_logits", False):
            logits = processor(logits, prefix)
    raw = torch.log_softmax(logits, dim=-1)  # (N, V)
    raw_eos = raw[:, eos_id].clone()  # (N,)
    log_probs = raw
    for processor in processors:
        if getattr(processor, "on_logits", False):
            continue
        if isinstance(processor, MinLength) and processor.eos_id == eos_id:
            if prefix.size(1) < processor.min_len:
                log_probs[:, eos_id] = -torch.inf
        else:
            log_probs = processor(log_probs, prefix)
    if bool(at_max_len.any()):
        rows = at_max_len.nonzero().squeeze(1)
        log_probs[rows] = -torch.inf
        log_probs[rows, eos_id] = raw_eos[rows]
    return log_probs


__all__ = [
    "ForbidTokens",
    "LogitsProcessor",
    "MinLength",
    "NoRepeatNGram",
    "RepetitionPenalty",
    "SuppressTokens",
    "build_processors",
    "next_token_log_probs",
]
