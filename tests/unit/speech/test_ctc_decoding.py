"""CTC prefix scores against brute force; joint search with weight 0 == beam search."""

from __future__ import annotations

import itertools
import math

import torch

from transduce.config import ModelConfig
from transduce.decoding import beam_search
from transduce.decoding.ctc import CTCPrefixScorer, ctc_greedy_search, joint_beam_search
from transduce.models.seq2seq import build_model


def collapse(path):
    out = []
    for i, t in enumerate(path):
        if t != 0 and (i == 0 or t != path[i - 1]):
            out.append(t)
    return out


def brute_force(log_probs, prefix, exact=False):
    """Sum over all alignments whose collapsed labels start with (or equal) ``prefix``."""
    T, V = log_probs.shape
    total = 0.0
    for path in itertools.product(range(V), repeat=T):
        labels = collapse(path)
        if labels == prefix if exact else labels[: len(prefix)] == prefix:
            total += math.exp(sum(float(log_probs[t, s]) for t, s in enumerate(path)))
    return math.log(total)


ONE = torch.tensor([0])  # the hypothesis belongs to utterance 0


def score_prefix(scorer, prefix, sentence=ONE):
    r, psi, last = scorer.initial_state(sentence), 0.0, -1
    for i, c in enumerate(prefix):
        r_new, psi_new = scorer.extend(
            r, torch.tensor([last]), torch.tensor([[c]]), first=i == 0, sentence=sentence
        )
        r, psi, last = r_new[:, :, :, 0], float(psi_new[0, 0]), c
    return r, psi


def test_prefix_scores_equal_brute_force():
    torch.manual_seed(0)
    T, V = 5, 5  # 0 blank, 3 eos (never emitted by CTC), labels 1, 2, 4
    log_probs = torch.log_softmax(torch.randn(T, V), dim=-1)
    scorer = CTCPrefixScorer(log_probs, eos_id=3)
    for prefix in ([1], [2], [1, 1], [1, 2], [2, 2, 1], [4, 1, 4]):
        _, psi = score_prefix(scorer, prefix)
        assert math.isclose(psi, brute_force(log_probs, prefix), rel_tol=1e-4), prefix
        # eos: probability of exactly the prefix
        r, _ = score_prefix(scorer, prefix)
        _, psi_eos = scorer.extend(
            r, torch.tensor([prefix[-1]]), torch.tensor([[3]]), first=False, sentence=ONE
        )
        assert math.isclose(
            float(psi_eos[0, 0]), brute_force(log_probs, prefix, exact=True), rel_tol=1e-4
        )


def test_prefix_scores_batched_over_candidates():
    torch.manual_seed(1)
    log_probs = torch.log_softmax(torch.randn(6, 5), dim=-1)
    scorer = CTCPrefixScorer(log_probs, eos_id=3)
    r1, _ = score_prefix(scorer, [1])
    r_all, psi = scorer.extend(
        r1, torch.tensor([1]), torch.tensor([[1, 2, 4]]), first=False, sentence=ONE
    )
    for j, c in enumerate([1, 2, 4]):
        assert math.isclose(float(psi[0, j]), brute_force(log_probs, [1, c]), rel_tol=1e-4)


def tiny_model(vocab=11):
    torch.manual_seed(0)
    cfg = ModelConfig(
        encoder={"type": "conformer", "d_model": 32, "heads": 2, "ff_dim": 64, "layers": 1},
        decoder={"type": "transformer", "d_model": 32, "heads": 2, "ff_dim": 64, "layers": 1},
    )
    return build_model(cfg, 0, vocab).eval()


def test_joint_with_weight_zero_equals_attention_beam_search():
    model = tiny_model()
    src = torch.randn(3, 90, 80)
    mask = torch.arange(90).unsqueeze(0) < torch.tensor([[90], [60], [45]])
    for beam, nbest in ((1, 1), (3, 2), (5, 3)):
        ref = beam_search(model, src, mask, beam_size=beam, max_len=12, nbest=nbest, min_len=2)
        got = joint_beam_search(
            model, src, mask, beam_size=beam, max_len=12, ctc_weight=0.0, nbest=nbest, min_len=2
        )
        assert [[h.tokens for h in hs] for hs in got] == [[h.tokens for h in hs] for hs in ref]
        for hs, rs in zip(got, ref):
            for h, r in zip(hs, rs):
                assert math.isclose(h.score, r.score, rel_tol=1e-5, abs_tol=1e-5)


def test_joint_and_ctc_greedy_run_and_differ_sensibly():
    model = tiny_model()
    src = torch.randn(2, 80, 80)
    mask = torch.ones(2, 80, dtype=torch.bool)
    greedy = ctc_greedy_search(model, src, mask)
    assert len(greedy) == 2 and all(0 not in hs[0].tokens for hs in greedy)  # no blanks
    joint = joint_beam_search(model, src, mask, beam_size=3, max_len=10, ctc_weight=0.5)
    assert len(joint) == 2
    for hs in joint:
        assert all(t not in (0, 2, 3) for t in hs[0].tokens)  # never blank, bos or eos


def test_prefix_scores_of_padded_utterances_in_a_batch():
    """Utterances of different lengths scored together: each as if alone (brute force)."""
    torch.manual_seed(2)
    lengths = torch.tensor([5, 3, 4])
    log_probs = torch.log_softmax(torch.randn(3, 5, 5), dim=-1)
    log_probs[1, 3:] = 99.0  # padding frames hold garbage: they must not count
    scorer = CTCPrefixScorer(log_probs, lengths, eos_id=3)
    for u, n in enumerate(lengths.tolist()):
        alone = log_probs[u, :n]
        for prefix in ([1], [2, 1], [4, 4]):
            r, psi = score_prefix(scorer, prefix, torch.tensor([u]))
            assert math.isclose(psi, brute_force(alone, prefix), rel_tol=1e-4), (u, prefix)
            _, psi_eos = scorer.extend(
                r, torch.tensor([prefix[-1]]), torch.tensor([[3]]), False, torch.tensor([u])
            )
            exact = brute_force(alone, prefix, exact=True)
            assert math.isclose(float(psi_eos[0, 0]), exact, rel_tol=1e-4), (u, prefix)


def test_joint_search_of_a_batch_equals_one_utterance_at_a_time():
    model = tiny_model()
    torch.manual_seed(3)
    src = torch.randn(4, 90, 80)
    lengths = torch.tensor([90, 41, 66, 20])
    mask = torch.arange(90).unsqueeze(0) < lengths.unsqueeze(1)
    for beam, nbest, weight in ((1, 1, 0.3), (3, 2, 0.5), (4, 3, 1.0)):
        kw = dict(beam_size=beam, max_len=torch.tensor([12, 5, 9, 3]), ctc_weight=weight)
        batched = joint_beam_search(model, src, mask, nbest=nbest, **kw)
        for b in range(4):
            n = int(lengths[b])
            alone = joint_beam_search(
                model, src[b : b + 1, :n], mask[b : b + 1, :n], nbest=nbest,
                **{**kw, "max_len": int(kw["max_len"][b])},
            )[0]  # fmt: skip
            assert [h.tokens for h in batched[b]] == [h.tokens for h in alone], (beam, b)
            for h, a in zip(batched[b], alone):
                assert math.isclose(h.score, a.score, rel_tol=1e-4, abs_tol=1e-4)
