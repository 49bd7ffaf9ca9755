"""Ancestral sampling with temperature, top-k and nucleus (top-p) filtering.

The order is HF transformers': processors, then temperature, then top-k, then
top-p, then a draw from what is left. The reported score is the sum of the
processed (untempered, unfiltered) log-probs of the drawn tokens, eos included,
so it is comparable with greedy's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from transduce.decoding.greedy import Hypothesis, decode_paths, max_len_per_sentence, with_min_len
from transduce.decoding.prefix import ForcedPrefix
from transduce.decoding.processors import LogitsProcessor


def filter_top_k_top_p(scores: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Set to ``-inf`` every token outside the top-k and outside the nucleus.

    scores: ``(N, V)`` log-probs or logits (any monotone scale).
    top_k: keep the ``k`` best tokens (ties with the k-th are kept too); 0 = off.
    top_p: keep the smallest set of best tokens whose probability (softmax of
        ``scores``) reaches ``top_p``; the best token is always kept; 1.0 = off.
    Returns a new ``(N, V)`` tensor.
    """
    vocab_size = scores.size(-1)
    if 0 < top_k < vocab_size:
        kth_best = scores.topk(top_k, dim=-1).values[:, -1:]  # (N, 1)
        scores = scores.masked_fill(scores < kth_best, -torch.inf)
    if top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)  # (N, V)
        probs = sorted_scores.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # probability of the better tokens
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)  # unsort
        scores = scores.masked_fill(drop, -torch.inf)
    return scores


def sample(
    model: Any,
    src: Tensor,
    src_mask: Tensor,
    max_len: int | Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    min_len: int = 1,
    bos_id: int = 2,
    eos_id: int = 3,
    processors: Sequence[LogitsProcessor] | None = None,
    return_attention: bool = False,
    prefix: Sequence[Sequence[int]] | None = None,
) -> list[list[Hypothesis]]:
    """Draw ``num_samples`` independent outputs per sentence.

    src: ``(B, S)`` ids or ``(B, S, F)`` features; src_mask ``(B, S)`` bool.
    prefix: optional target prefix per sentence (see :mod:`transduce.decoding.prefix`).
    generator: makes the draws reproducible; it must live on the model's device.
    Returns, per sentence, ``num_samples`` hypotheses in the order drawn.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature} (use greedy_search)")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0 or num_samples < 1:
        raise ValueError(f"need top_k >= 0 and num_samples >= 1, got {top_k}, {num_samples}")

    def choose(log_probs: Tensor) -> Tensor:
        scores = filter_top_k_top_p(log_probs / temperature, top_k, top_p)
        return torch.multinomial(scores.softmax(dim=-1), 1, generator=generator).squeeze(1)

    with torch.inference_mode():
        enc_out = model.encode(src, src_mask)
        batch_size = enc_out.memory.size(0)
        device = enc_out.memory.device
        max_lens = max_len_per_sentence(max_len, batch_size, device)
        # Row b * num_samples + j is sample j of sentence b.
        expand = torch.arange(batch_size, device=device).repeat_interleave(num_samples)
        forced = ForcedPrefix.build(prefix, device, eos_id) if prefix is not None else None
        hyps = decode_paths(
            model,
            enc_out.reorder(expand),
            max_lens[expand],
            choose=choose,
            processors=with_min_len(processors, 0 if forced is not None else min_len, eos_id),
            bos_id=bos_id,
            eos_id=eos_id,
            return_attention=return_attention,
            forced=forced.select(expand) if forced is not None else None,
            min_len=min_len,
        )
    return [hyps[b * num_samples : (b + 1) * num_samples] for b in range(batch_size)]


__all__ = ["filter_top_k_top_p", "sample"]
