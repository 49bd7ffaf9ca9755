"""Forced-prefix decoding in greedy, beam and sampling: outputs start with the prefix,
scores equal teacher-forced scores of what follows it, lengths count after it."""

from __future__ import annotations

import pytest
import torch

from tests.unit.decoding.toy import (
    MODEL_CASES,
    ToyModel,
    make_model,
    teacher_forced_log_prob,
    toy_batch,
)
from transduce.decoding import SuppressTokens, beam_search, greedy_search, sample

MAX_LEN = torch.tensor([7, 3, 6, 5, 7, 4])
# Different lengths per sentence: the common part is fed at once, the rest forced per step.
PREFIXES = [[5, 6], [7], [4, 4, 9], [], [8, 5], [6, 7]]


def _one(src, mask, b):
    n = int(mask[b].sum())
    return src[b : b + 1, :n], mask[b : b + 1, :n]


def _continuation_log_prob(model, src, mask, b, tokens, prefix):
    """log p(tokens[len(prefix):] + eos | prefix), teacher-forced in one pass."""
    full = teacher_forced_log_prob(model, *_one(src, mask, b), tokens)
    given = 0.0
    if prefix:
        with torch.inference_mode():
            enc = model.encode(*_one(src, mask, b))
            logits, _, _ = model.decode(torch.tensor([[2, *prefix[:-1]]]), enc)
            lp = torch.log_softmax(logits.float(), -1)[0]
            given = sum(lp[i, t].item() for i, t in enumerate(prefix))
    return full - given


@pytest.mark.parametrize("case", MODEL_CASES)
@pytest.mark.parametrize("eos_in_length", [True, False])
def test_beam_with_prefix_starts_with_it_and_scores_are_teacher_forced(case, eos_in_length):
    model = make_model(case)
    src, mask = toy_batch()
    results = beam_search(
        model, src, mask, 3, MAX_LEN, nbest=3, prefix=PREFIXES, eos_in_length=eos_in_length
    )
    for b, hyps in enumerate(results):
        assert len(hyps) == 3
        for hyp in hyps:
            prefix = PREFIXES[b]
            assert hyp.tokens[: len(prefix)] == prefix
            generated = len(hyp.tokens) - len(prefix)
            assert generated <= int(MAX_LEN[b])  # the limit counts after the prefix
            total = _continuation_log_prob(model, src, mask, b, hyp.tokens, prefix)
            length = max(generated + (1 if eos_in_length else 0), 1)
            assert hyp.score == pytest.approx(total / length, abs=1e-4)


@pytest.mark.parametrize("case", MODEL_CASES)
def test_greedy_and_sampling_with_prefix(case):
    model = make_model(case)
    src, mask = toy_batch()
    g = torch.Generator().manual_seed(0)
    results = {
        "greedy": greedy_search(model, src, mask, MAX_LEN, prefix=PREFIXES),
        "sample": sample(
            model, src, mask, MAX_LEN, num_samples=2, generator=g, prefix=PREFIXES, min_len=2
        ),
    }
    for name, per_sentence in results.items():
        for b, hyps in enumerate(per_sentence):
            for hyp in hyps:
                prefix = PREFIXES[b]
                assert hyp.tokens[: len(prefix)] == prefix, name
                if name == "sample":
                    assert len(hyp.tokens) - len(prefix) >= min(2, int(MAX_LEN[b]))
                total = _continuation_log_prob(model, src, mask, b, hyp.tokens, prefix)
                assert hyp.score == pytest.approx(total, abs=1e-4), name


def test_prefix_changes_the_output_and_an_empty_prefix_changes_nothing():
    model = ToyModel()
    src, mask = toy_batch()
    plain = beam_search(model, src, mask, 3, MAX_LEN)
    empty = beam_search(model, src, mask, 3, MAX_LEN, prefix=[[]] * 6)
    assert [h[0].tokens for h in plain] == [h[0].tokens for h in empty]
    assert [h[0].score for h in plain] == pytest.approx([h[0].score for h in empty], abs=1e-6)
    forced = beam_search(model, src, mask, 3, MAX_LEN, prefix=PREFIXES)
    assert [h[0].tokens for h in forced] != [h[0].tokens for h in plain]


def test_suppress_tokens_renormalizes_and_fires_at_its_step():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    prefix = torch.empty(1, 2, dtype=torch.long)
    out = SuppressTokens([3], at_step=2)(logits, prefix)
    assert torch.isinf(out[0, 3]) and torch.equal(out[0, :3], logits[0, :3])
    assert torch.equal(SuppressTokens([3], at_step=1)(logits, prefix), logits)
    from transduce.decoding.processors import next_token_log_probs

    lp = next_token_log_probs(logits, prefix, [SuppressTokens([3])], torch.tensor([False]), 3)
    assert torch.exp(lp).sum().item() == pytest.approx(1.0)  # renormalized over the rest
