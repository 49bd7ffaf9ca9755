"""Batched beam search over the Decoder contract.

Every sentence keeps ``K = beam_size`` live hypotheses as rows of one flat
batch of ``A * K`` rows (``A`` sentences still searching). Each step:

1. decode the last token of every row, turn the logits into processed log-probs;
2. add them to the live scores and take the best ``2K`` of the ``K * V``
   continuations of each sentence (at most ``K`` of them end in eos, so at
   least ``K`` remain to keep the beam full);
3. a continuation ending in eos that ranks among the top ``K`` is finished:
   its score becomes ``sum_logprob / len ** len_penalty`` with ``len`` counting
   the eos, and it leaves the beam;
4. the best ``K`` others become the new beam; the decoder state is reordered
   to the rows they extend with ``state.reorder(index)``;
5. sentences that are done leave the batch: their rows are dropped from the
   encoder output and the state, so they cost nothing more.

The encoder output is never expanded to ``K`` copies: the decoder reads ``K``
hypotheses per sentence (see ``transduce.models.base``) and keeps what depends
only on the source once per sentence; ``state.reorder(rows, sentences=kept)``
touches the per-sentence entries only when sentences leave the batch.

A ``scorer`` may rescore each step's log-probs (joint CTC/attention decoding,
:class:`transduce.decoding.ctc.CTCBeamScorer`): ``scorer.start(enc_out, K)`` once,
``scorer.rescore(log_probs, step)`` every step (it returns the scores the search
ranks by, never positive, ``-inf`` for what it rules out), and
``scorer.advance(rows, tokens, kept)`` with the rows the new beam extends, their
tokens and the sentences still searching (None if all are).

A sentence is done when it reaches its ``max_len`` (eos is forced there, so
all live hypotheses finish) or when it holds ``beam_size`` finished hypotheses
and, with ``early_stop=True`` (the default, fairseq's and JoeyNMT's rule), that
is enough. With ``early_stop=False`` it searches on until no live hypothesis
can beat the worst of the ``beam_size`` best finished ones. That bound is exact
because processed log-probs are never positive: a live hypothesis's sum can
only fall, and its length will be between the next step and ``max_len + 1``,
so the best it can reach is the larger of ``sum / L ** len_penalty`` at those
two lengths. With ``len_penalty > 0`` it rarely stops before ``max_len``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from transduce.decoding.greedy import (
    Hypothesis,
    append_attention,
    make_hypothesis,
    max_len_per_sentence,
    with_min_len,
)
from transduce.decoding.prefix import ForcedPrefix, start_inputs
from transduce.decoding.processors import LogitsProcessor, next_token_log_probs
from transduce.decoding.topk import topk_rows


def _live_can_improve(
    best_live_sum: float, step: int, max_len: int, worst_kept: float, len_penalty: float
) -> bool:
    """Whether a live hypothesis (``step + 1`` tokens, score ``best_live_sum``)
    could still finish with a normalized score above ``worst_kept``."""
    lengths = (step + 2, max_len + 1)  # eos counted: the shortest and longest it can get
    return max(best_live_sum / length**len_penalty for length in lengths) > worst_kept


def beam_search(
    model: Any,
    src: Tensor,
    src_mask: Tensor,
    beam_size: int,
    max_len: int | Tensor,
    min_len: int = 1,
    nbest: int = 1,
    len_penalty: float = 1.0,
    bos_id: int = 2,
    eos_id: int = 3,
    processors: Sequence[LogitsProcessor] | None = None,
    return_attention: bool = False,
    early_stop: bool = True,
    prefix: Sequence[Sequence[int]] | None = None,
    eos_in_length: bool = True,
    scorer: Any | None = None,
) -> list[list[Hypothesis]]:
    """Beam search for a batch of sentences.

    src: ``(B, S)`` ids or ``(B, S, F)`` features; src_mask ``(B, S)`` bool.
    max_len: int or ``(B,)`` long tensor; at most that many tokens before eos.
    nbest: hypotheses returned per sentence (``<= beam_size``), best first.
    len_penalty: scores are ``sum_logprob / (len(tokens) + 1) ** len_penalty``;
        0 ranks by the plain sum (favouring short outputs), 1 by the mean.
    early_stop: see the module docstring.
    prefix: optional target prefix per sentence (see :mod:`transduce.decoding.prefix`):
        hypotheses start with it, and its tokens count in neither score nor length.
    eos_in_length: the length that normalizes a score counts the eos (transduce's
        and fairseq's rule); False counts only the tokens (CTranslate2's rule).
    scorer: rescores each step (see the module docstring); not with ``prefix``.
    Returns ``B`` lists of up to ``nbest`` hypotheses. A sentence whose every
    continuation was forbidden by the processors gets one empty hypothesis
    scored ``-inf``.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be between 1 and beam_size ({beam_size}), got {nbest}")
    if scorer is not None and prefix is not None:
        raise ValueError("a scorer (joint CTC decoding) does not take a target prefix")
    k = beam_size
    with torch.inference_mode():
        enc_out = model.encode(src, src_mask)
        batch_size = enc_out.memory.size(0)
        device = enc_out.memory.device
        max_lens = max_len_per_sentence(max_len, batch_size, device)  # (A,)
        memory_mask = enc_out.mask  # (B, S), for trimming attention
        forced = ForcedPrefix.build(prefix, device, eos_id) if prefix is not None else None
        processors = with_min_len(processors, 0 if forced is not None else min_len, eos_id)
        finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
        # Tokens of each sentence's prefix: not counted in its length.
        given = forced.lengths.tolist() if forced is not None else [0] * batch_size
        eos_term = 1 if eos_in_length else 0
        if scorer is not None:
            scorer.start(enc_out, k)

        sentences = list(range(batch_size))  # original index of each active sentence
        # Finished hypotheses per active sentence, kept on the device like the scores.
        n_finished = torch.zeros(batch_size, dtype=torch.long, device=device)  # (A,)
        if forced is not None:
            max_lens = max_lens + forced.lengths
            rows_of = torch.arange(batch_size, device=device).repeat_interleave(k)
            forced = forced.select(rows_of)  # (A*K) rows
        # Only beam 0 is live at the start, so the first step does not pick
        # the same continuation K times.
        scores = torch.full((batch_size, k), -torch.inf, device=device)  # (A, K)
        scores[:, 0] = 0.0
        attn_history: Tensor | None = None  # (A*K, t, S)
        state = None
        # tgt_in (A*K, 1 + m): bos and the common part of the prefixes; prefix (A*K, t)
        tgt_in, prefix, step = start_inputs(forced, batch_size * k, bos_id, device)
        while sentences:
            num_active = len(sentences)
            logits, state, attn = model.decode(
                tgt_in, enc_out, state, need_attention=return_attention
            )
            if return_attention and attn is not None and attn_history is None and step > 0:
                attn_history = attn[:, :-1]  # rows that read the fed prefix tokens
            at_max_len = (max_lens <= step).repeat_interleave(k)  # (A*K,)
            log_probs = next_token_log_probs(
                logits[:, -1], prefix, processors, at_max_len, eos_id
            )  # (A*K, V)
            if forced is not None:
                log_probs = forced.apply(log_probs, step, min_len, eos_id)
            if scorer is not None:
                log_probs = scorer.rescore(log_probs, step)
            vocab_size = log_probs.size(-1)
            # In place: the log-probs are this step's own tensor (next_token_log_probs).
            candidates = log_probs.add_(scores.view(-1, 1)).view(num_active, k * vocab_size)
            top_scores, top_ids = topk_rows(candidates, 2 * k)  # (A, 2K), best first
            top_tokens = top_ids % vocab_size
            # Row of the flat (A*K) batch that each candidate extends.
            first_row = torch.arange(num_active, device=device).unsqueeze(1) * k
            top_rows = first_row + torch.div(top_ids, vocab_size, rounding_mode="floor")
            if return_attention:
                attn_history = append_attention(attn_history, attn)

            # Finished: eos among the top K.
            is_eos = top_tokens == eos_id  # (A, 2K)
            ending = is_eos[:, :k] & top_scores[:, :k].isfinite()  # (A, K)
            n_finished = n_finished + ending.sum(1)
            ends = ending.nonzero()  # (E, 2)
            if ends.numel() > 0:
                end_rows = top_rows[ends[:, 0], ends[:, 1]]  # (E,)
                for a, row, tokens, total in zip(
                    ends[:, 0].tolist(),
                    end_rows.tolist(),
                    prefix[end_rows].tolist(),
                    top_scores[ends[:, 0], ends[:, 1]].tolist(),
                ):
                    sentence = sentences[a]
                    history = attn_history[row] if attn_history is not None else None
                    length = len(tokens) - given[sentence] + eos_term
                    normalized = total / max(length, 1) ** len_penalty
                    finished[sentence].append(
                        make_hypothesis(tokens, normalized, history, memory_mask[sentence])
                    )

            # Live: the best K candidates that do not end in eos (stable sort
            # moves the eos ones back and keeps the rest in score order).
            live = torch.sort(is_eos.long(), dim=1, stable=True).indices[:, :k]  # (A, K)
            scores = top_scores.gather(1, live)  # (A, K), best first
            live_rows = top_rows.gather(1, live)
            live_tokens = top_tokens.gather(1, live)

            # A sentence searches on while under its limit with a live hypothesis and,
            # once it holds K finished ones, only without early_stop and while a live
            # one can still beat them (that check is rare: in Python).
            searching = (max_lens > step) & scores[:, 0].isfinite()  # (A,)
            full = n_finished >= k
            keep = (searching & ~full).nonzero().squeeze(1).tolist()
            if not early_stop:
                keep += [
                    a
                    for a in (searching & full).nonzero().squeeze(1).tolist()
                    if _live_can_improve(
                        float(scores[a, 0]),
                        step - given[sentences[a]],  # prefix tokens are not counted
                        int(max_lens[a]) - given[sentences[a]],
                        sorted((h.score for h in finished[sentences[a]]), reverse=True)[k - 1],
                        len_penalty,
                    )
                ]
                keep.sort()
            if not keep:
                break

            # Reorder everything to the surviving beams of the active sentences.
            kept = torch.tensor(keep, device=device)
            rows = live_rows[kept].view(-1)  # (A'*K,)
            tgt_in = live_tokens[kept].view(-1, 1)
            prefix = torch.cat([prefix[rows], tgt_in], dim=1)
            if attn_history is not None:
                attn_history = attn_history[rows]
            forced = forced.select(rows) if forced is not None else None
            scores = scores[kept]
            if scorer is not None:
                scorer.advance(rows, tgt_in.view(-1), kept if len(keep) < num_active else None)
            if len(keep) < num_active:
                state = state.reorder(rows, sentences=kept)
                enc_out = enc_out.reorder(kept)
                max_lens = max_lens[kept]
                n_finished = n_finished[kept]
                sentences = [sentences[a] for a in keep]
            else:
                state = state.reorder(rows)  # hypotheses move within their sentences
            step += 1

    results = []
    for hyps in finished:
        hyps.sort(key=lambda h: h.score, reverse=True)
        results.append(hyps[:nbest] or [Hypothesis(tokens=[], score=-float("inf"))])
    return results


__all__ = ["beam_search"]
