"""Invariants every search must keep, for the toy decoder and every registered decoder."""

from __future__ import annotations

import pytest
import torch

from tests.unit.decoding.toy import MODEL_CASES, make_model, teacher_forced_log_prob, toy_batch
from transduce.decoding import beam_search, greedy_search, sample

# Different limits per sentence, so rows leave the batch at different steps.
MAX_LEN = torch.tensor([12, 3, 9, 7, 12, 5])


def _one(src: torch.Tensor, mask: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sentence ``b`` alone, with its padding cut off: ``(1, S_b)``."""
    length = int(mask[b].sum())
    return src[b : b + 1, :length], mask[b : b + 1, :length]


@pytest.mark.parametrize("case", MODEL_CASES)
def test_beam_of_one_is_greedy(case: tuple) -> None:
    model = make_model(case)
    src, mask = toy_batch()
    greedy = greedy_search(model, src, mask, max_len=MAX_LEN)
    for len_penalty in (0.0, 1.0):
        beam = beam_search(model, src, mask, beam_size=1, max_len=MAX_LEN, len_penalty=len_penalty)
        for g, b in zip(greedy, beam):
            assert b[0].tokens == g[0].tokens
            length = len(g[0].tokens) + 1
            assert b[0].score == pytest.approx(g[0].score / length**len_penalty, abs=1e-5)


@pytest.mark.parametrize("case", MODEL_CASES)
def test_batch_decodes_like_one_by_one(case: tuple) -> None:
    model = make_model(case)
    src, mask = toy_batch()
    searches = {
        "greedy": lambda s, m, n: greedy_search(model, s, m, n, return_attention=True),
        "beam": lambda s, m, n: beam_search(
            model, s, m, 4, n, nbest=3, min_len=2, return_attention=True
        ),
        "top_k=1": lambda s, m, n: sample(model, s, m, n, top_k=1, num_samples=2),
    }
    for name, search in searches.items():
        batched = search(src, mask, MAX_LEN)
        for b in range(src.size(0)):
            alone = search(*_one(src, mask, b), MAX_LEN[b : b + 1])[0]
            assert [h.tokens for h in batched[b]] == [h.tokens for h in alone], name
            for x, y in zip(batched[b], alone):
                assert x.score == pytest.approx(y.score, abs=1e-5), name
                if x.attention is not None:
                    assert x.attention.shape == (len(x.tokens), int(mask[b].sum()))
                    torch.testing.assert_close(x.attention, y.attention, atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", MODEL_CASES)
@pytest.mark.parametrize("len_penalty", [0.0, 1.0, 0.6])
def test_beam_scores_match_teacher_forcing(case: tuple, len_penalty: float) -> None:
    model = make_model(case)
    src, mask = toy_batch()
    results = beam_search(
        model, src, mask, beam_size=4, max_len=MAX_LEN, nbest=4, len_penalty=len_penalty
    )
    for b, hyps in enumerate(results):
        assert len(hyps) == 4
        for hyp in hyps:
            total = teacher_forced_log_prob(model, *_one(src, mask, b), hyp.tokens)
            length = len(hyp.tokens) + 1  # eos counted
            assert hyp.score * length**len_penalty == pytest.approx(total, abs=1e-4)
            assert hyp.score == pytest.approx(total / length**len_penalty, abs=1e-4)


@pytest.mark.parametrize("case", MODEL_CASES)
def test_greedy_and_sample_scores_match_teacher_forcing(case: tuple) -> None:
    model = make_model(case)
    src, mask = toy_batch()
    generator = torch.Generator().manual_seed(0)
    results = [
        *greedy_search(model, src, mask, MAX_LEN),
        *sample(model, src, mask, MAX_LEN, num_samples=3, generator=generator),
    ]
    for i, hyps in enumerate(results):
        b = i % src.size(0)
        for hyp in hyps:
            total = teacher_forced_log_prob(model, *_one(src, mask, b), hyp.tokens)
            assert hyp.score == pytest.approx(total, abs=1e-4)


@pytest.mark.parametrize("case", MODEL_CASES)
def test_length_limits(case: tuple) -> None:
    model = make_model(case)
    src, mask = toy_batch()
    limits = torch.tensor([0, 1, 4, 6, 6, 8])
    for min_len in (0, 3, 6):
        for name, results in {
            "greedy": greedy_search(model, src, mask, limits, min_len=min_len),
            "beam": beam_search(model, src, mask, 3, limits, min_len=min_len, nbest=3),
            "sample": sample(model, src, mask, limits, min_len=min_len, num_samples=3),
        }.items():
            for hyps, limit in zip(results, limits.tolist()):
                for hyp in hyps:
                    assert len(hyp.tokens) <= limit, name
                    # max_len wins over min_len when they conflict
                    assert len(hyp.tokens) >= min(min_len, limit), name
                    assert 3 not in hyp.tokens, name


class _Expanded(torch.nn.Module):
    """The pre-issue-10 layout: the encoder output copied to every hypothesis row."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def encode(self, src, src_mask):  # noqa: ANN001, ANN201
        return self.model.encode(src, src_mask)

    def decode(self, tgt_in, enc_out, state=None, need_attention=True):  # noqa: ANN001, ANN201
        expanded = enc_out.expand_rows(tgt_in.size(0))
        return self.model.decode(tgt_in, expanded, state, need_attention)


@pytest.mark.parametrize("case", MODEL_CASES)
def test_beam_per_sentence_memory_equals_expanded_memory(case: tuple) -> None:
    """Per-sentence cross keys/values (one copy per sentence, not per beam) give the
    same hypotheses as the memory copied to every beam, sentences leaving included."""
    model = make_model(case)
    src, mask = toy_batch()
    for return_attention in (False, True):
        ours = beam_search(model, src, mask, 3, MAX_LEN, nbest=3, return_attention=return_attention)
        ref = beam_search(
            _Expanded(model), src, mask, 3, MAX_LEN, nbest=3, return_attention=return_attention
        )
        for o, r in zip(ours, ref):
            assert [h.tokens for h in o] == [h.tokens for h in r]
            assert [h.score for h in o] == pytest.approx([h.score for h in r], abs=1e-5)
            if return_attention:
                for ho, hr in zip(o, r):
                    if hr.attention is not None:
                        torch.testing.assert_close(ho.attention, hr.attention)
