"""BLEU / chrF wrappers and the metric registry."""

from __future__ import annotations

import pytest
import sacrebleu

from transduce.evaluation import (
    MetricResult,
    available_metrics,
    compute_metrics,
    corpus_bleu,
    corpus_chrf,
    is_higher_better,
    metrics,
    register_metric,
)

HYPS = ["the cat sat on the mat", "a quick brown fox jumps"]
REFS = ["the cat sat on the mat", "the quick brown fox jumped"]


def test_identical_text_scores_100() -> None:
    bleu = corpus_bleu(HYPS, HYPS)
    assert bleu.score == pytest.approx(100.0)
    assert "tok:13a" in bleu.signature and "nrefs:1" in bleu.signature
    assert bleu.details.startswith("BLEU = 100.00")
    chrf = corpus_chrf(HYPS, HYPS)
    assert chrf.score == pytest.approx(100.0) and "nc:6" in chrf.signature


def test_matches_sacrebleu() -> None:
    assert corpus_bleu(HYPS, REFS).score == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert corpus_chrf(HYPS, REFS).score == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)


def test_multiple_references_per_sentence() -> None:
    refs = [["a dog sat on the mat", "the cat sat on the mat"], ["the quick brown fox jumped"]]
    result = corpus_bleu(HYPS, refs)
    streams = [
        ["a dog sat on the mat", "the quick brown fox jumped"],
        ["the cat sat on the mat", None],
    ]
    assert result.score == pytest.approx(sacrebleu.corpus_bleu(HYPS, streams).score)
    assert "nrefs:var" in result.signature


def test_length_mismatch() -> None:
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu(HYPS, ["only one"])
    with pytest.raises(ValueError, match="no hypotheses"):
        corpus_bleu([], [])


def test_compute_and_register(monkeypatch: pytest.MonkeyPatch) -> None:
    results = compute_metrics(["BLEU", "chrf"], HYPS, REFS)
    assert list(results) == ["bleu", "chrf"]
    assert all(isinstance(r, MetricResult) for r in results.values())
    with pytest.raises(ValueError, match="unknown metric 'rouge'.*bleu"):
        compute_metrics(["rouge"], HYPS, REFS)

    # Register into a copy of the registry so other tests see the real one.
    monkeypatch.setattr(metrics, "_METRICS", dict(metrics._METRICS))

    @register_metric("_exact", higher_is_better=False)
    def exact(hyps, refs) -> MetricResult:
        """A toy error rate: the percentage of sentences that differ from their reference."""
        wrong = sum(h != r for h, r in zip(hyps, refs))
        return MetricResult("_exact", 100.0 * wrong / len(hyps), higher_is_better=False)

    assert "_exact" in available_metrics() and not is_higher_better("_exact")
    assert compute_metrics(["_exact"], HYPS, REFS)["_exact"].score == 50.0
    assert is_higher_better("bleu")
