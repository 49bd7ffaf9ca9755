"""CTC decoding: greedy CTC, and joint CTC/attention beam search (ESPnet-style).

Both need an encoder with a CTC head (``model.encoder.ctc_head``, blank = pad id 0).

**CTC greedy**: the best label per encoder frame, repeats merged, blanks removed.

**Joint beam search** (Watanabe et al. 2017; ESPnet's ``CTCPrefixScore``): a
hypothesis ``h`` extended by token ``c`` scores

    score(h + c) = score(h) + (1 - λ) log p_att(c | h) + λ (log ψ(h + c) - log ψ(h))

where ``ψ(g)`` is the CTC *prefix* probability: the total probability of every
alignment whose collapsed label sequence starts with ``g``. For eos, ``ψ`` is
replaced by the probability of exactly ``h``: ``r^n_T(h) + r^b_T(h)``. The forward
variables ``r^n_t(g)`` / ``r^b_t(g)`` (frames ``1..t`` collapse to ``g``, ending in
a label / in blank) are kept per hypothesis and extended one token at a time:

    r^n_t(h+c) = (r^n_{t-1}(h+c) + φ_{t-1}) y_t(c)
    r^b_t(h+c) = (r^n_{t-1}(h+c) + r^b_{t-1}(h+c)) y_t(blank)
    ψ(h+c)     = r^n_1(h+c) + Σ_t φ_{t-1} y_t(c)

with ``φ_{t-1} = r^b_{t-1}(h) + r^n_{t-1}(h)``, or only ``r^b_{t-1}(h)`` when ``c``
repeats the last label of ``h`` (all in log space here). Only the ``pre_beam``
best tokens of the attention decoder are scored with CTC (ESPnet's partial
scoring); the rest of the search (2K candidates, finishing on eos in the top K,
length normalization, early stop, min/max length) follows
:func:`transduce.decoding.beam.beam_search`, so with ``λ = 0`` both give the same
hypotheses (tested).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from transduce.decoding.greedy import Hypothesis, max_len_per_sentence, with_min_len
from transduce.decoding.processors import next_token_log_probs
from transduce.models.audio import BLANK_ID, ctc_log_probs

NEG_INF = -float("inf")


def ctc_greedy_search(model: Any, src: Tensor, src_mask: Tensor) -> list[list[Hypothesis]]:
    """Best path: argmax per frame, merge repeats, drop blanks. Score = sum of frame maxima."""
    with torch.inference_mode():
        enc_out = model.encode(src, src_mask)
        log_probs = ctc_log_probs(model, enc_out)  # (B, S', V)
        best, ids = log_probs.max(dim=-1)
        results = []
        for b in range(ids.size(0)):
            n = int(enc_out.mask[b].sum())
            path = ids[b, :n].tolist()
            tokens = [
                t for i, t in enumerate(path) if t != BLANK_ID and (i == 0 or t != path[i - 1])
            ]
            results.append([Hypothesis(tokens=tokens, score=float(best[b, :n].sum()))])
    return results


class CTCPrefixScorer:
    """CTC prefix scores of hypotheses over one utterance's ``(T, V)`` log-probs.

    A hypothesis' state is ``(r, log_psi, last)``: ``r`` ``(T, 2)`` holds log
    ``r^n_t`` and ``r^b_t``; ``log_psi`` its prefix score; ``last`` its last token
    (None for the empty prefix).
    """

    def __init__(self, log_probs: Tensor, eos_id: int = 3, blank_id: int = BLANK_ID) -> None:
        self.x = log_probs.float()  # (T, V)
        self.T = self.x.size(0)
        self.eos_id = eos_id
        self.blank = blank_id

    def initial_state(self) -> tuple[Tensor, float, int | None]:
        r = torch.full((self.T, 2), NEG_INF)
        r[:, 1] = torch.cumsum(self.x[:, self.blank], dim=0)  # only blanks so far
        return r, 0.0, None

    def extend(
        self, r_prev: Tensor, last: Tensor, tokens: Tensor, first: bool
    ) -> tuple[Tensor, Tensor]:
        """Score ``N`` hypotheses x ``C`` candidate tokens at once.

        r_prev ``(T, 2, N)``; last ``(N,)`` last token of each hypothesis (-1 if none);
        tokens ``(N, C)`` candidates; ``first``: the hypotheses are the empty prefix.
        Returns ``r (T, 2, N, C)`` of the extensions and ``log_psi (N, C)``; eos
        candidates get the full-sequence score ``log(r^n_T(h) + r^b_T(h))``.
        """
        x = self.x
        N, C = tokens.shape
        xc = x[:, tokens.reshape(-1)].view(self.T, N, C)  # (T, N, C) y_t(c)
        xb = x[:, self.blank].view(self.T, 1, 1)
        r = torch.full((self.T, 2, N, C), NEG_INF)
        if first:
            r[0, 0] = xc[0]
        r_sum = torch.logaddexp(r_prev[:, 0], r_prev[:, 1])  # (T, N)
        # φ: where c repeats the last label, only paths ending in blank may continue
        repeat = (tokens == last.unsqueeze(1)).unsqueeze(0)  # (1, N, C)
        phi = torch.where(repeat, r_prev[:, 1].unsqueeze(-1), r_sum.unsqueeze(-1))  # (T, N, C)
        for t in range(1, self.T):
            r[t, 0] = torch.logaddexp(r[t - 1, 0], phi[t - 1]) + xc[t]
            r[t, 1] = torch.logaddexp(r[t - 1, 0], r[t - 1, 1]) + xb[t]
        log_psi = torch.logsumexp(torch.cat([r[:1, 0], phi[:-1] + xc[1:]], dim=0), dim=0)
        is_eos = tokens == self.eos_id
        if bool(is_eos.any()):
            log_psi = torch.where(is_eos, r_sum[-1].unsqueeze(1).expand(N, C), log_psi)
        return r, log_psi


def _decode_one(
    model: Any,
    enc_out: Any,
    ctc: CTCPrefixScorer | None,
    beam_size: int,
    max_len: int,
    processors: list,
    nbest: int,
    len_penalty: float,
    ctc_weight: float,
    bos_id: int,
    eos_id: int,
) -> list[Hypothesis]:
    """Joint beam search for one utterance (``enc_out`` has batch 1)."""
    k = beam_size
    device = enc_out.memory.device
    # enc_out stays one sentence: the decoder reads the K rows as K hypotheses of it.
    scores = torch.full((k,), NEG_INF, device=device)
    scores[0] = 0.0
    prefix = torch.empty(k, 0, dtype=torch.long, device=device)
    tgt_in = torch.full((k, 1), bos_id, dtype=torch.long, device=device)
    state = None
    if ctc is not None:
        r0, _, _ = ctc.initial_state()
        ctc_r = r0.unsqueeze(-1).expand(-1, -1, k).clone()  # (T, 2, K)
        ctc_psi = torch.zeros(k)
        last = torch.full((k,), -1, dtype=torch.long)
    finished: list[Hypothesis] = []
    step = 0
    while True:
        logits, state, _ = model.decode(tgt_in, enc_out, state, need_attention=False)
        at_max = torch.full((k,), step >= max_len, device=device)
        att = next_token_log_probs(logits[:, -1], prefix, processors, at_max, eos_id)  # (K, V)
        V = att.size(-1)
        if ctc is None:
            joint = att
        else:
            pre_beam = min(V, 2 * k)
            cand = att.topk(pre_beam, dim=1).indices  # (K, C)
            r, psi = ctc.extend(ctc_r, last, cand.cpu(), first=step == 0)
            delta = (psi - ctc_psi.unsqueeze(1)).to(device)  # (K, C)
            special = (cand == BLANK_ID) | (cand == bos_id)
            part = (1 - ctc_weight) * att.gather(1, cand) + ctc_weight * delta
            part = part.masked_fill(special | att.gather(1, cand).isinf(), NEG_INF)
            joint = torch.full_like(att, NEG_INF).scatter(1, cand, part)
        candidates = (scores.view(-1, 1) + joint).view(-1)  # (K*V,)
        top_scores, top_ids = candidates.topk(2 * k)
        top_tokens = top_ids % V
        top_rows = torch.div(top_ids, V, rounding_mode="floor")
        is_eos = top_tokens == eos_id
        for j in range(k):
            if is_eos[j] and top_scores[j].isfinite():
                tokens = prefix[top_rows[j]].tolist()
                total = float(top_scores[j])
                finished.append(Hypothesis(tokens, total / (len(tokens) + 1) ** len_penalty))
        live = torch.sort(is_eos.long(), stable=True).indices[:k]
        scores = top_scores[live]
        rows, new_tokens = top_rows[live], top_tokens[live]
        if step >= max_len or scores[0] == NEG_INF or len(finished) >= k:
            break
        tgt_in = new_tokens.view(-1, 1)
        prefix = torch.cat([prefix[rows], tgt_in], dim=1)
        state = state.reorder(rows)
        if ctc is not None:
            cols = (cand[rows] == new_tokens.unsqueeze(1)).float().argmax(dim=1).cpu()
            rows_c = rows.cpu()
            ctc_r = r[:, :, rows_c, cols]
            ctc_psi = psi[rows_c, cols]
            last = new_tokens.cpu()
        step += 1
    finished.sort(key=lambda h: h.score, reverse=True)
    return finished[:nbest] or [Hypothesis(tokens=[], score=NEG_INF)]


def joint_beam_search(
    model: Any,
    src: Tensor,
    src_mask: Tensor,
    beam_size: int,
    max_len: int | Tensor,
    ctc_weight: float = 0.3,
    min_len: int = 1,
    nbest: int = 1,
    len_penalty: float = 1.0,
    bos_id: int = 2,
    eos_id: int = 3,
) -> list[list[Hypothesis]]:
    """Joint CTC/attention beam search, one utterance at a time; see the module docstring.

    ``ctc_weight`` is λ in ``[0, 1]``: 0 is attention beam search, 1 is CTC prefix
    search guided by the attention decoder's candidate tokens.
    """
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
    processors = with_min_len(None, min_len, eos_id)
    results = []
    with torch.inference_mode():
        enc_all = model.encode(src, src_mask)
        limits = max_len_per_sentence(max_len, src.size(0), enc_all.memory.device).tolist()
        log_probs = ctc_log_probs(model, enc_all) if ctc_weight > 0 else None
        for b in range(src.size(0)):
            n = int(enc_all.mask[b].sum())
            one = enc_all.reorder(torch.tensor([b], device=enc_all.memory.device))
            ctc = CTCPrefixScorer(log_probs[b, :n].cpu(), eos_id) if log_probs is not None else None
            results.append(
                _decode_one(
                    model, one, ctc, beam_size, limits[b], processors, nbest,
                    len_penalty, ctc_weight, bos_id, eos_id,
                )
            )  # fmt: skip
    return results


def ctc_search(model: Any, src: Tensor, src_mask: Tensor, dcfg: Any, max_len: Tensor):
    """Dispatch for ``decode.mode``: ``ctc_greedy`` or ``joint``."""
    if dcfg.mode == "ctc_greedy":
        return ctc_greedy_search(model, src, src_mask)
    if dcfg.mode == "joint":
        return joint_beam_search(
            model,
            src,
            src_mask,
            beam_size=max(dcfg.beam, 1),
            max_len=max_len,
            ctc_weight=dcfg.ctc_weight,
            min_len=dcfg.min_len,
            nbest=min(dcfg.nbest, max(dcfg.beam, 1)),
            len_penalty=dcfg.len_penalty,
        )
    from transduce.config import ConfigError

    raise ConfigError(f"decode.mode: '{dcfg.mode}' is not one of attention, ctc_greedy, joint")


__all__ = ["CTCPrefixScorer", "ctc_greedy_search", "ctc_search", "joint_beam_search"]
