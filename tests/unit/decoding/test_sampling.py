"""Sampling: filtering on hand-made distributions, top_k=1 == greedy, seeding."""

from __future__ import annotations

import math

import pytest
import torch

from tests.unit.decoding.toy import ToyModel, toy_batch
from transduce.decoding import filter_top_k_top_p, greedy_search, sample
from transduce.models.base import DecoderState, EncoderOutput

# probabilities 0.5, 0.3, 0.15, 0.05 in a shuffled order
PROBS = torch.tensor([0.15, 0.5, 0.05, 0.3])


def _kept(top_k: int = 0, top_p: float = 1.0) -> list[int]:
    out = filter_top_k_top_p(PROBS.log().unsqueeze(0), top_k, top_p)[0]
    return sorted(torch.isfinite(out).nonzero().squeeze(1).tolist())


def test_top_p_keeps_the_smallest_nucleus() -> None:
    assert _kept(top_p=0.4) == [1]  # 0.5 alone reaches 0.4
    assert _kept(top_p=0.75) == [1, 3]  # 0.5 + 0.3
    assert _kept(top_p=0.85) == [0, 1, 3]  # + 0.15
    assert _kept(top_p=0.99) == [0, 1, 2, 3]
    assert _kept(top_p=1.0) == [0, 1, 2, 3]
    assert _kept(top_p=1e-6) == [1]  # the best token always survives


def test_top_k_and_both() -> None:
    assert _kept(top_k=1) == [1]
    assert _kept(top_k=2) == [1, 3]
    assert _kept(top_k=10) == [0, 1, 2, 3]
    # top-k first, then top-p on the renormalized rest: 0.5/0.95 < 0.6 <= 0.8/0.95
    assert _kept(top_k=3, top_p=0.6) == [1, 3]
    out = filter_top_k_top_p(PROBS.log().unsqueeze(0), 2)[0]
    torch.testing.assert_close(out[[1, 3]], PROBS[[1, 3]].log())


class _ConstantModel(torch.nn.Module):
    """The same next-token distribution ``probs`` ``(V,)`` at every step."""

    def __init__(self, probs: torch.Tensor) -> None:
        super().__init__()
        self.log_probs = probs.log()

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(memory=src.unsqueeze(-1).float(), mask=src_mask)

    def decode(self, tgt_in, enc_out, state=None, need_attention=True):  # noqa: ANN001, ANN201
        logits = self.log_probs.expand(tgt_in.size(0), tgt_in.size(1), -1)
        return logits, DecoderState(), None


def test_sample_draws_only_from_the_nucleus() -> None:
    # ids 0..5; eos=3 gets probability 0 so every sample is one token, then eos forced
    probs = torch.tensor([0.5, 0.05, 0.3, 1e-30, 0.15, 1e-30])
    model = _ConstantModel(probs / probs.sum())
    src, mask = torch.ones(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)
    hyps = sample(model, src, mask, 1, top_p=0.75, num_samples=2000, generator=generator)[0]
    firsts = [h.tokens[0] for h in hyps]
    assert set(firsts) == {0, 2}
    assert firsts.count(0) / len(firsts) == pytest.approx(0.5 / 0.8, abs=0.04)
    assert hyps[0].score == pytest.approx(
        math.log(probs[hyps[0].tokens[0]]) + math.log(1e-30 / probs.sum()), rel=1e-4
    )


def test_top_k_one_is_greedy() -> None:
    model = ToyModel()
    src, mask = toy_batch(8)
    greedy = greedy_search(model, src, mask, 12, return_attention=True)
    for temperature in (0.5, 1.0, 3.0):
        sampled = sample(model, src, mask, 12, temperature, top_k=1, num_samples=3,
                         return_attention=True)  # fmt: skip
        for g, s in zip(greedy, sampled):
            assert len(s) == 3
            for h in s:
                assert h.tokens == g[0].tokens
                assert h.score == pytest.approx(g[0].score, abs=1e-6)
                torch.testing.assert_close(h.attention, g[0].attention)


def test_seeded_sampling_is_reproducible() -> None:
    model = ToyModel()
    src, mask = toy_batch(8)

    def draw(seed: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(seed)
        results = sample(model, src, mask, 12, num_samples=4, generator=generator)
        return [h.tokens for hyps in results for h in hyps]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
    assert len(set(map(tuple, draw(7)))) > 8  # samples of one sentence differ


def test_bad_arguments_raise() -> None:
    model = ToyModel()
    src, mask = toy_batch(2)
    with pytest.raises(ValueError, match="temperature"):
        sample(model, src, mask, 5, temperature=0.0)
    with pytest.raises(ValueError, match="top_p"):
        sample(model, src, mask, 5, top_p=0.0)
