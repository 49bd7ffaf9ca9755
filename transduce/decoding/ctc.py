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
scoring). The search itself is :func:`transduce.decoding.beam.beam_search`, batched
over utterances, with :class:`CTCBeamScorer` as its ``scorer``; with ``λ = 0`` it is
plain beam search (tested).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from transduce.decoding.beam import beam_search
from transduce.decoding.greedy import Hypothesis
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
    """CTC prefix scores of hypotheses over a batch of utterances' log-probs.

    ``log_probs`` ``(A, T, V)`` (or ``(T, V)`` for one utterance) with ``lengths``
    ``(A,)`` frames each. Frames past an utterance's end are made neutral (every
    label impossible, blank certain), so ``r`` at the last padded frame equals ``r``
    at the utterance's own last frame and one recursion serves utterances of any
    length. A hypothesis' state is ``r`` ``(T, 2)``: log ``r^n_t`` and ``r^b_t``;
    ``N`` hypotheses are scored together, ``sentence`` ``(N,)`` naming the utterance
    each one belongs to.
    """

    def __init__(
        self,
        log_probs: Tensor,
        lengths: Tensor | None = None,
        eos_id: int = 3,
        blank_id: int = BLANK_ID,
    ) -> None:
        x = log_probs.float()
        if x.dim() == 2:
            x = x.unsqueeze(0)
        A, T, _ = x.shape
        if lengths is not None:
            x = x.clone()  # the caller's log-probs stay as they are
            pad = torch.arange(T, device=x.device).unsqueeze(0) >= lengths.to(x.device).view(A, 1)
            x.masked_fill_(pad.unsqueeze(-1), NEG_INF)
            x[:, :, blank_id].masked_fill_(pad, 0.0)
        self.x = x.transpose(0, 1)  # (T, A, V)
        self.T = T
        self.eos_id = eos_id
        self.blank = blank_id

    def keep(self, sentences: Tensor) -> None:
        """Only these utterances (indices into the current ones) are scored from now on."""
        self.x = self.x[:, sentences]

    def initial_state(self, sentence: Tensor) -> Tensor:
        """``r`` ``(T, 2, N)`` of the empty prefix for hypotheses of utterances ``sentence``."""
        r = torch.full((self.T, 2, sentence.numel()), NEG_INF, device=self.x.device)
        r[:, 1] = torch.cumsum(self.x[:, sentence, self.blank], dim=0)  # only blanks so far
        return r

    def extend(
        self, r_prev: Tensor, last: Tensor, tokens: Tensor, first: bool, sentence: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Score ``N`` hypotheses x ``C`` candidate tokens at once.

        r_prev ``(T, 2, N)``; last ``(N,)`` last token of each hypothesis (-1 if none);
        tokens ``(N, C)`` candidates; ``first``: the hypotheses are the empty prefix;
        sentence ``(N,)`` the utterance of each hypothesis.
        Returns ``r (T, 2, N, C)`` of the extensions and ``log_psi (N, C)``; eos
        candidates get the full-sequence score ``log(r^n_T(h) + r^b_T(h))``.
        """
        N, C = tokens.shape
        xc = self.x[:, sentence.unsqueeze(1).expand(N, C), tokens]  # (T, N, C) y_t(c)
        xb = self.x[:, sentence, self.blank].unsqueeze(-1)  # (T, N, 1)
        r = torch.full((self.T, 2, N, C), NEG_INF, device=xc.device)
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


class CTCBeamScorer:
    """Joint CTC/attention scoring as :func:`~transduce.decoding.beam.beam_search`'s
    ``scorer``: every step, the ``2K`` best tokens of each hypothesis under the
    attention decoder are rescored ``(1 - λ) log p_att + λ Δ log ψ`` and every other
    token is ruled out; the CTC forward variables follow the beam's choices.
    All hypotheses of all utterances are scored in one recursion over the frames.
    """

    def __init__(self, model: Any, ctc_weight: float, bos_id: int = 2, eos_id: int = 3) -> None:
        self.model, self.weight, self.bos_id, self.eos_id = model, ctc_weight, bos_id, eos_id

    def start(self, enc_out: Any, k: int) -> None:
        log_probs = ctc_log_probs(self.model, enc_out)  # (A, T', V)
        self.prefix = CTCPrefixScorer(log_probs, enc_out.mask.sum(1), self.eos_id)
        self.k = k
        self._rows_of(log_probs.size(0), log_probs.device)
        self.r = self.prefix.initial_state(self.sentence)  # (T, 2, A*K)
        self.psi = torch.zeros(self.sentence.numel(), device=log_probs.device)
        self.last = torch.full_like(self.sentence, -1)

    def _rows_of(self, num_sentences: int, device: torch.device) -> None:
        self.sentence = torch.arange(num_sentences, device=device).repeat_interleave(self.k)

    def rescore(self, att: Tensor, step: int) -> Tensor:
        """``(A*K, V)`` attention log-probs -> joint scores, -inf outside the candidates."""
        cand = att.topk(min(att.size(-1), 2 * self.k), dim=1).indices  # (N, C)
        r, psi = self.prefix.extend(self.r, self.last, cand, step == 0, self.sentence)
        att_c = att.gather(1, cand)
        part = (1 - self.weight) * att_c + self.weight * (psi - self.psi.unsqueeze(1))
        special = (cand == BLANK_ID) | (cand == self.bos_id) | att_c.isinf()
        self.cand, self.r_next, self.psi_next = cand, r, psi
        return torch.full_like(att, NEG_INF).scatter(1, cand, part.masked_fill(special, NEG_INF))

    def advance(self, rows: Tensor, tokens: Tensor, kept: Tensor | None) -> None:
        """The beam extends ``rows`` by ``tokens``; ``kept``: the sentences still searching
        (None: all of them)."""
        cols = (self.cand[rows] == tokens.unsqueeze(1)).float().argmax(dim=1)
        self.r = self.r_next[:, :, rows, cols]
        self.psi = self.psi_next[rows, cols]
        self.last = tokens
        if kept is not None:
            self.prefix.keep(kept)
            self._rows_of(kept.numel(), kept.device)


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
    """Joint CTC/attention beam search over the whole batch; see the module docstring.

    ``ctc_weight`` is λ in ``[0, 1]``: 0 is attention beam search, 1 is CTC prefix
    search guided by the attention decoder's candidate tokens.
    """
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
    scorer = CTCBeamScorer(model, ctc_weight, bos_id, eos_id) if ctc_weight > 0 else None
    return beam_search(
        model, src, src_mask, beam_size, max_len, min_len=min_len, nbest=nbest,
        len_penalty=len_penalty, bos_id=bos_id, eos_id=eos_id, scorer=scorer,
    )  # fmt: skip


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


__all__ = [
    "CTCBeamScorer",
    "CTCPrefixScorer",
    "ctc_greedy_search",
    "ctc_search",
    "joint_beam_search",
]
