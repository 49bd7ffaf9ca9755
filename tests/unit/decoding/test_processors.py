"""Logit processors on hand-made inputs, and inside every search."""

from __future__ import annotations

import math

import pytest
import torch

from tests.unit.decoding.toy import ToyModel, toy_batch
from transduce.decoding import (
    MinLength,
    NoRepeatNGram,
    RepetitionPenalty,
    beam_search,
    build_processors,
    greedy_search,
    sample,
)

INF = math.inf


def _uniform(rows: int, vocab: int = 8) -> torch.Tensor:
    return torch.full((rows, vocab), -math.log(vocab))


def test_min_length_forbids_eos_only_before_min_len() -> None:
    log_probs = _uniform(2)
    short = MinLength(3, eos_id=3)(log_probs, torch.tensor([[5, 6], [7, 7]]))
    assert torch.isinf(short[:, 3]).all() and (short[:, 3] < 0).all()
    torch.testing.assert_close(short[:, [0, 1, 2, 4, 5, 6, 7]], log_probs[:, [0, 1, 2, 4, 5, 6, 7]])
    long_enough = MinLength(3, eos_id=3)(log_probs, torch.tensor([[5, 6, 7], [7, 7, 7]]))
    torch.testing.assert_close(long_enough, log_probs)


def _banned(processor: NoRepeatNGram, prefix: list[list[int]]) -> list[list[int]]:
    out = processor(_uniform(len(prefix)), torch.tensor(prefix))
    return [torch.isinf(row).nonzero().squeeze(1).tolist() for row in out]


def test_no_repeat_ngram_bans_exactly_the_repeating_tokens() -> None:
    assert _banned(NoRepeatNGram(2), [[5, 6, 5], [5, 6, 7], [5, 5, 4]]) == [[6], [], []]
    assert _banned(NoRepeatNGram(2), [[5, 5], [4, 5]]) == [[5], []]
    # 5 6 is followed by 7 and by 4: both are banned; 6 7 is not where we are
    assert _banned(NoRepeatNGram(3), [[5, 6, 7, 5, 6, 4, 5, 6]]) == [[4, 7]]
    assert _banned(NoRepeatNGram(1), [[1, 6, 6]]) == [[1, 6]]
    assert _banned(NoRepeatNGram(3), [[5, 6]]) == [[]]


def test_repetition_penalty_is_ctrl() -> None:
    values = torch.tensor([[-1.0, -2.0, 3.0, -4.0]])
    out = RepetitionPenalty(2.0)(values, torch.tensor([[1, 2, 1]]))
    torch.testing.assert_close(out, torch.tensor([[-1.0, -4.0, 1.5, -4.0]]))
    torch.testing.assert_close(RepetitionPenalty(2.0)(values, torch.empty(1, 0).long()), values)


def test_build_processors() -> None:
    assert build_processors(0) == []
    kinds = [type(p) for p in build_processors(2, no_repeat_ngram=3, repetition_penalty=1.2)]
    assert kinds == [RepetitionPenalty, NoRepeatNGram, MinLength]
    with pytest.raises(ValueError):
        NoRepeatNGram(0)


def _ngrams(tokens: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_in_every_search(n: int) -> None:
    model = ToyModel()
    src, mask = toy_batch(8)
    processors = build_processors(no_repeat_ngram=n)
    generator = torch.Generator().manual_seed(0)
    runs = {
        "greedy": lambda p: greedy_search(model, src, mask, 10, processors=p),
        "beam": lambda p: beam_search(model, src, mask, 4, 10, nbest=4, processors=p),
        "sample": lambda p: sample(model, src, mask, 10, num_samples=4, generator=generator,
                                   processors=p),
    }  # fmt: skip
    for name, run in runs.items():
        # the toy repeats itself, so the rule has work to do
        assert any(
            len(set(_ngrams(h.tokens, n))) < len(_ngrams(h.tokens, n))
            for hyps in run(None)
            for h in hyps
        ), name
        for hyps in run(processors):
            for h in hyps:
                grams = _ngrams(h.tokens, n)
                assert len(set(grams)) == len(grams), (name, h.tokens)


def test_repetition_penalty_reduces_repeats() -> None:
    model = ToyModel()
    src, mask = toy_batch(8)

    def repeats(results: list) -> int:
        return sum(len(h.tokens) - len(set(h.tokens)) for hyps in results for h in hyps)

    plain = greedy_search(model, src, mask, 12, min_len=12)
    penalized = greedy_search(model, src, mask, 12, min_len=12, processors=[RepetitionPenalty(3.0)])
    assert repeats(penalized) < repeats(plain)
