"""Beam search on the toy decoder: exactness, ordering, stopping and batch shrinking."""

from __future__ import annotations

import itertools

import pytest
import torch

from tests.unit.decoding.toy import EOS, VOCAB, ToyModel, teacher_forced_log_prob, toy_batch
from transduce.decoding import beam_search, greedy_search


def test_beam_is_not_worse_than_greedy() -> None:
    """Not a theorem: the greedy path can fall out of a narrow beam and be lost
    (on this toy, beam 2 with max_len 15 does so for one sentence). The exact
    statement is ``test_exhaustive_beam_finds_the_true_best``."""
    model = ToyModel()
    src, mask = toy_batch(8)
    greedy = greedy_search(model, src, mask, max_len=15)
    for beam_size in (3, 4, 8):
        for early_stop in (True, False):
            beam = beam_search(
                model, src, mask, beam_size, 15, len_penalty=0.0, early_stop=early_stop
            )
            for g, b in zip(greedy, beam):
                assert b[0].score >= g[0].score - 1e-6
    # the check is not vacuous: beam search finds something better for some sentence
    assert any(b[0].score > g[0].score + 1e-3 for g, b in zip(greedy, beam))


def test_exhaustive_beam_finds_the_true_best() -> None:
    """With a beam wider than every prefix, beam search is exhaustive search."""
    model = ToyModel()
    src, mask = toy_batch(2)
    max_len, nbest = 2, 10
    words = [t for t in range(VOCAB) if t != EOS]
    outputs = [[w] for w in words] + [list(p) for p in itertools.product(words, repeat=2)]
    for len_penalty in (0.0, 1.0):
        results = beam_search(
            model, src, mask, VOCAB**2, max_len, nbest=nbest, len_penalty=len_penalty,
            early_stop=False,
        )  # fmt: skip
        for b, hyps in enumerate(results):
            n = int(mask[b].sum())
            scored = sorted(
                (
                    teacher_forced_log_prob(model, src[b : b + 1, :n], mask[b : b + 1, :n], out)
                    / (len(out) + 1) ** len_penalty,
                    out,
                )
                for out in outputs
            )[::-1][:nbest]
            assert [h.tokens for h in hyps] == [out for _, out in scored]
            assert [h.score for h in hyps] == pytest.approx([s for s, _ in scored], abs=1e-5)


def test_nbest_is_sorted_and_distinct() -> None:
    model = ToyModel()
    src, mask = toy_batch()
    for len_penalty in (0.0, 1.0):
        results = beam_search(model, src, mask, 5, 12, nbest=5, len_penalty=len_penalty)
        for hyps in results:
            assert len(hyps) == 5
            scores = [h.score for h in hyps]
            assert scores == sorted(scores, reverse=True)
            assert len({tuple(h.tokens) for h in hyps}) == 5


def test_exact_stopping_never_does_worse() -> None:
    """Searching on past the first beam_size finished ones only adds candidates."""
    model = ToyModel()
    src, mask = toy_batch(8)
    for len_penalty in (0.0, 1.0):
        fast = beam_search(model, src, mask, 3, 15, len_penalty=len_penalty)
        exact = beam_search(model, src, mask, 3, 15, len_penalty=len_penalty, early_stop=False)
        for f, e in zip(fast, exact):
            assert e[0].score >= f[0].score - 1e-6


class _CountingModel(torch.nn.Module):
    """Wraps a model and records the batch size of every decode call."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batch_sizes: list[int] = []
        self.sentences: list[int] = []

    def encode(self, src, src_mask):  # noqa: ANN001, ANN201
        return self.model.encode(src, src_mask)

    def decode(self, tgt_in, enc_out, state=None, need_attention=True):  # noqa: ANN001, ANN201
        self.batch_sizes.append(tgt_in.size(0))
        self.sentences.append(enc_out.memory.size(0))
        return self.model.decode(tgt_in, enc_out, state, need_attention)


def test_finished_sentences_leave_the_batch() -> None:
    src, mask = toy_batch(2)
    limits = torch.tensor([1, 8])
    counting = _CountingModel(ToyModel())
    beam_search(counting, src, mask, 3, limits, min_len=5)
    # sentence 0 must end at step 1 (eos forced); sentence 1 runs at least 6 steps
    assert counting.batch_sizes[:2] == [6, 6]
    assert len(counting.batch_sizes) >= 6 and set(counting.batch_sizes[2:]) == {3}
    # the encoder output is per sentence, never expanded to the beam
    assert counting.sentences[:2] == [2, 2] and set(counting.sentences[2:]) == {1}

    counting = _CountingModel(ToyModel())
    greedy_search(counting, src, mask, torch.tensor([0, 8]), min_len=5)
    assert counting.batch_sizes[0] == 2 and set(counting.batch_sizes[1:]) == {1}
    assert len(counting.batch_sizes) >= 6


def test_zero_max_len_gives_empty_output() -> None:
    model = ToyModel()
    src, mask = toy_batch(3)
    results = beam_search(model, src, mask, 4, torch.tensor([0, 2, 0]), nbest=1)
    assert results[0][0].tokens == [] and results[2][0].tokens == []
    assert len(results[1][0].tokens) in (1, 2)


def test_bad_arguments_raise() -> None:
    model = ToyModel()
    src, mask = toy_batch(2)
    with pytest.raises(ValueError, match="nbest"):
        beam_search(model, src, mask, 2, 5, nbest=3)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, src, mask, 0, 5)
    with pytest.raises(ValueError, match="max_len"):
        beam_search(model, src, mask, 2, torch.tensor([1, 2, 3]))
