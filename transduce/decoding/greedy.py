"""Greedy search, and what all searches share: :class:`Hypothesis` and the one-path loop.

Greedy search and sampling both extend every row by exactly one token per step
and differ only in how that token is chosen (argmax or a random draw), so both
run :func:`decode_paths`. Beam search (``beam.py``) reuses the helpers.

Conventions shared by every search:

* Step ``t`` (from 0) picks token number ``t + 1``; tokens are returned
  without bos and eos.
* ``min_len``: eos is forbidden until that many tokens exist.
* ``max_len`` (an int, or a ``(B,)`` long tensor with one limit per sentence):
  at most that many tokens; at step ``max_len`` eos is forced, so every
  hypothesis ends with eos and its score includes the log-prob of that eos.
* A row that has ended leaves the batch: the encoder output and the decoder
  state are reordered to the rows still running, so they stop costing compute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from transduce.decoding.prefix import ForcedPrefix, start_inputs
from transduce.decoding.processors import LogitsProcessor, MinLength, next_token_log_probs
from transduce.decoding.topk import argmax_rows
from transduce.models.base import EncoderOutput


@dataclass
class Hypothesis:
    """One output sequence.

    tokens: the generated ids, without bos and eos.
    score: log-probability of ``tokens`` followed by eos under the (processed)
        model; beam search divides it by ``(len(tokens) + 1) ** len_penalty``.
    attention: ``(len(tokens), S)`` attention over the real (unpadded) source
        positions when producing each token, on the CPU; None unless asked
        for or when the decoder has no attention.
    """

    tokens: list[int]
    score: float
    attention: Tensor | None = None


def max_len_per_sentence(max_len: int | Tensor, batch_size: int, device: torch.device) -> Tensor:
    """``max_len`` as a ``(B,)`` long tensor on ``device``."""
    limits = torch.as_tensor(max_len, dtype=torch.long, device=device)
    if limits.dim() == 0:
        limits = limits.expand(batch_size)
    if limits.shape != (batch_size,):
        raise ValueError(
            f"max_len must be an int or a tensor of shape ({batch_size},), "
            f"got shape {tuple(limits.shape)}"
        )
    if bool((limits < 0).any()):
        raise ValueError("max_len must be >= 0")
    return limits.clone()


def with_min_len(
    processors: Sequence[LogitsProcessor] | None, min_len: int, eos_id: int
) -> list[LogitsProcessor]:
    """The caller's processors followed by the ``min_len`` rule."""
    result = list(processors or [])
    if min_len > 0:
        result.append(MinLength(min_len, eos_id))
    return result


def make_hypothesis(
    tokens: list[int], score: float, attention: Tensor | None, memory_mask: Tensor
) -> Hypothesis:
    """attention: ``(t, S)`` rows for ``tokens``; memory_mask ``(S,)`` selects real positions."""
    if attention is not None:
        attention = attention[: len(tokens), memory_mask].float().cpu()
    return Hypothesis(tokens=tokens, score=score, attention=attention)


def append_attention(history: Tensor | None, attn: Tensor | None) -> Tensor | None:
    """history ``(N, t, S)`` + this step's attn ``(N, T_new, S)`` -> ``(N, t + 1, S)``."""
    if attn is None:
        return None
    step = attn[:, -1:]
    return step if history is None else torch.cat([history, step], dim=1)


def decode_paths(
    model: Any,
    enc_out: EncoderOutput,
    max_lens: Tensor,
    choose: Callable[[Tensor], Tensor],
    processors: Sequence[LogitsProcessor],
    bos_id: int,
    eos_id: int,
    return_attention: bool,
    forced: ForcedPrefix | None = None,
    min_len: int = 0,
) -> list[Hypothesis]:
    """Extend each of ``N`` rows one token per step until it picks eos.

    enc_out: the encoder output for the ``N`` rows.
    max_lens: ``(N,)`` long, the length limit of each row (tokens after its prefix).
    choose: ``(A, V)`` processed log-probs -> ``(A,)`` chosen token ids.
    forced: the rows' target prefixes (:mod:`transduce.decoding.prefix`); with it,
        ``min_len`` is enforced after each row's prefix.
    Returns one hypothesis per row, with the unnormalized score.
    """
    n = max_lens.numel()
    device = max_lens.device
    memory_mask = enc_out.mask  # (N, S), kept for trimming attention
    results: list[Hypothesis | None] = [None] * n
    rows = list(range(n))  # original row of each live row
    if forced is not None:
        max_lens = max_lens + forced.lengths
    # tgt_in (A, 1 + m): bos and the prefix every row shares the length of; prefix (A, t)
    tgt_in, prefix, step = start_inputs(forced, n, bos_id, device)
    scores = torch.zeros(n, device=device)  # (A,)
    attn_history: Tensor | None = None  # (A, t, S)
    state = None
    while rows:
        logits, state, attn = model.decode(tgt_in, enc_out, state, need_attention=return_attention)
        if return_attention and attn is not None and attn_history is None and step > 0:
            attn_history = attn[:, :-1]  # rows that read the fed prefix tokens
        log_probs = next_token_log_probs(
            logits[:, -1], prefix, processors, max_lens <= step, eos_id
        )  # (A, V)
        if forced is not None:
            log_probs = forced.apply(log_probs, step, min_len, eos_id)
        token = choose(log_probs)  # (A,)
        scores = scores + log_probs.gather(1, token.unsqueeze(1)).squeeze(1)
        ended = token == eos_id
        ended_at = ended.nonzero().squeeze(1)
        if ended_at.numel() > 0:
            for i, tokens, score in zip(
                ended_at.tolist(), prefix[ended_at].tolist(), scores[ended_at].tolist()
            ):
                history = attn_history[i] if return_attention and attn_history is not None else None
                results[rows[i]] = make_hypothesis(tokens, score, history, memory_mask[rows[i]])
        prefix = torch.cat([prefix, token.unsqueeze(1)], dim=1)
        if return_attention:
            attn_history = append_attention(attn_history, attn)
        if ended_at.numel() > 0:
            keep = (~ended).nonzero().squeeze(1)
            rows = [rows[i] for i in keep.tolist()]
            if not rows:
                break
            prefix, scores, token = prefix[keep], scores[keep], token[keep]
            max_lens = max_lens[keep]
            forced = forced.select(keep) if forced is not None else None
            attn_history = attn_history[keep] if attn_history is not None else None
            state = state.reorder(keep)
            enc_out = enc_out.reorder(keep)
        tgt_in = token.unsqueeze(1)
        step += 1
    return results  # type: ignore[return-value]


def greedy_search(
    model: Any,
    src: Tensor,
    src_mask: Tensor,
    max_len: int | Tensor,
    min_len: int = 1,
    bos_id: int = 2,
    eos_id: int = 3,
    processors: Sequence[LogitsProcessor] | None = None,
    return_attention: bool = False,
    prefix: Sequence[Sequence[int]] | None = None,
) -> list[list[Hypothesis]]:
    """Pick the most likely token at every step.

    src: ``(B, S)`` ids or ``(B, S, F)`` features (whatever the encoder reads);
    src_mask: ``(B, S)`` bool, True on real positions.
    prefix: optional target prefix per sentence (see :mod:`transduce.decoding.prefix`).
    Returns, per sentence, a list holding one hypothesis; its score is the
    unnormalized sum of log-probs, eos included.
    """
    with torch.inference_mode():
        enc_out = model.encode(src, src_mask)
        batch_size = enc_out.memory.size(0)
        device = enc_out.memory.device
        max_lens = max_len_per_sentence(max_len, batch_size, device)
        forced = ForcedPrefix.build(prefix, device, eos_id) if prefix is not None else None
        hyps = decode_paths(
            model,
            enc_out,
            max_lens,
            choose=argmax_rows,
            processors=with_min_len(processors, 0 if forced is not None else min_len, eos_id),
            bos_id=bos_id,
            eos_id=eos_id,
            return_attention=return_attention,
            forced=forced,
            min_len=min_len,
        )
    return [[h] for h in hyps]


__all__ = ["Hypothesis", "greedy_search"]
