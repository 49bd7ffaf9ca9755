"""Decoding controls from DecodeConfig reach the searches; the coverage loss and penalty."""

from __future__ import annotations

import dataclasses

import torch

from tests.unit.summarization.test_copy import DECODERS, batch, make_model
from transduce.config import DecodeConfig
from transduce.decoding import Hypothesis
from transduce.inference import _rescore_coverage, search
from transduce.tasks.base import Batch
from transduce.training.trainer import coverage_loss


def _decode(model, **options) -> list[list[int]]:
    src, mask, _ = batch()
    dcfg = dataclasses.replace(DecodeConfig(), max_len_a=0.0, max_len_b=12, **options)
    return [h[0].tokens for h in search(model, src, mask, dcfg)]


@torch.no_grad()
def test_no_repeat_ngram_and_repetition_penalty_apply_to_every_search():
    model = make_model(*DECODERS[0].values)
    for beam in (1, 3):
        for tokens in _decode(model, beam=beam, no_repeat_ngram=1, min_len=12):
            assert len(tokens) == len(set(tokens)) == 12
    src, mask, _ = batch()
    dcfg = DecodeConfig(sampling=True, no_repeat_ngram=1, max_len_a=0.0, max_len_b=8, min_len=8)
    gen = torch.Generator().manual_seed(0)
    for hyps in search(model, src, mask, dcfg, generator=gen):
        assert len(hyps[0].tokens) == len(set(hyps[0].tokens))
    plain = _decode(model, beam=1, min_len=12)
    assert _decode(model, beam=1, min_len=12, repetition_penalty=1.0) == plain
    assert _decode(model, beam=1, min_len=12, repetition_penalty=50.0) != plain


def test_coverage_penalty_rescoring():
    full = Hypothesis([5], -1.0, torch.tensor([[0.5, 0.5], [0.5, 0.5]]))  # covers all: cp = 0
    half = Hypothesis([6], -0.9, torch.tensor([[1.0, 0.0], [0.75, 0.25]]))  # cp = log .25
    ranked = _rescore_coverage([half, full], beta=1.0, keep_attention=False)
    assert [h.tokens for h in ranked] == [[5], [6]]
    assert ranked[1].score == -0.9 + float(torch.tensor(0.25).log())
    assert ranked[0].attention is None
    model = make_model(*DECODERS[0].values)
    with torch.no_grad():
        assert len(_decode(model, beam=3, coverage_penalty=0.5)) == 3


def test_coverage_loss_is_sum_of_min_attention_and_cumulative():
    attn = torch.tensor([[[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]]])  # (1, T=3, S=2)
    tgt = torch.tensor([[5, 6, 0]])  # the last position is padding
    b = Batch(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool), tgt, tgt, 2)
    # t=0: c=0 -> 0; t=1: c=(1,0) -> min(.5,1)+min(.5,0) = .5; t=2 is padding
    assert coverage_loss(None, b, None, attn).item() == 0.5
