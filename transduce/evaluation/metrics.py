"""Corpus-level metrics, by name.

Every metric is a function ``fn(hyps, refs) -> MetricResult`` registered under a
name; :func:`compute_metrics` runs several by name. BLEU and chrF wrap
sacreBLEU's ``BLEU`` and ``CHRF`` classes so each score comes with its
signature (``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0``),
which is what makes a number comparable with a paper's.

References: ``refs[i]`` holds the reference(s) of ``hyps[i]``: either one
string, or a list of strings when a sentence has several references (the
counts may differ between sentences). This is per-sentence, *not* sacreBLEU's
list of reference streams.

Other tasks add their metrics with :func:`register_metric`::

    @register_metric("wer", higher_is_better=False)
    def corpus_wer(hyps, refs): ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF

Refs = Sequence[str] | Sequence[Sequence[str]]


@dataclass(frozen=True)
class MetricResult:
    """One corpus score.

    name: the registered metric name (``bleu``, ``chrf``...).
    score: the corpus score, on the metric's usual scale (BLEU and chrF 0-100).
    signature: how it was computed (sacreBLEU signature), empty if not applicable.
    details: a human-readable line, e.g. BLEU's n-gram precisions and brevity penalty.
    higher_is_better: the direction, for early stopping and keeping the best checkpoints.
    """

    name: str
    score: float
    signature: str = ""
    details: str = ""
    higher_is_better: bool = True

    def __str__(self) -> str:
        sig = f" ({self.signature})" if self.signature else ""
        return f"{self.name} = {self.score:.2f}{sig}"


MetricFn = Callable[[Sequence[str], Refs], MetricResult]

_METRICS: dict[str, tuple[MetricFn, bool]] = {}


def register_metric(
    name: str, fn: MetricFn | None = None, *, higher_is_better: bool = True
) -> Callable:
    """Register ``fn`` under ``name`` (lowercase); usable as a decorator without ``fn``."""

    def add(f: MetricFn) -> MetricFn:
        key = name.lower()
        if key in _METRICS and _METRICS[key][0] is not f:
            raise ValueError(f"metric '{key}' is already registered")
        _METRICS[key] = (f, higher_is_better)
        return f

    return add(fn) if fn is not None else add


def available_metrics() -> list[str]:
    """Registered metric names, sorted."""
    return sorted(_METRICS)


def _lookup(name: str) -> tuple[MetricFn, bool]:
    try:
        return _METRICS[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown metric '{name}' (available: {', '.join(available_metrics())})"
        ) from None


def is_higher_better(name: str) -> bool:
    """Whether larger values of metric ``name`` are better (BLEU yes, WER no)."""
    return _lookup(name)[1]


def normalize_refs(hyps: Sequence[str], refs: Refs) -> list[list[str]]:
    """Per-sentence ``refs`` -> per-sentence lists of references, checked against ``hyps``."""
    if isinstance(hyps, str) or isinstance(refs, str):
        raise ValueError("hyps and refs must be lists of sentences, not a single string")
    if len(hyps) != len(refs):
        raise ValueError(
            f"{len(hyps)} hypotheses but {len(refs)} references: refs[i] must hold the "
            "reference (a string) or references (a list of strings) of hyps[i]"
        )
    if not hyps:
        raise ValueError("no hypotheses to score")
    out: list[list[str]] = []
    for i, r in enumerate(refs):
        group = [r] if isinstance(r, str) else list(r)
        if not group or not all(isinstance(x, str) for x in group):
            raise ValueError(f"refs[{i}] must be a string or a non-empty list of strings")
        out.append(group)
    return out


def _streams(groups: list[list[str]]) -> list[list[str | None]]:
    """Per-sentence reference lists -> sacreBLEU's streams (None where a sentence has fewer)."""
    n = max(len(g) for g in groups)
    return [[g[k] if k < len(g) else None for g in groups] for k in range(n)]


def _sacrebleu(name: str, metric: BLEU | CHRF, hyps: Sequence[str], refs: Refs) -> MetricResult:
    streams = _streams(normalize_refs(hyps, refs))
    result = metric.corpus_score(list(hyps), streams)
    return MetricResult(
        name=name,
        score=float(result.score),
        signature=metric.get_signature().format(),
        details=str(result),
    )


@register_metric("bleu")
def corpus_bleu(hyps: Sequence[str], refs: Refs, tokenize: str | None = None) -> MetricResult:
    """sacreBLEU corpus BLEU (default ``13a`` tokenization; pass ``tokenize="zh"`` etc.)."""
    return _sacrebleu("bleu", BLEU(tokenize=tokenize), hyps, refs)


@register_metric("chrf")
def corpus_chrf(hyps: Sequence[str], refs: Refs) -> MetricResult:
    """sacreBLEU corpus chrF (character 6-grams, beta 2)."""
    return _sacrebleu("chrf", CHRF(), hyps, refs)


@register_metric("chrf++")
def corpus_chrf_pp(hyps: Sequence[str], refs: Refs) -> MetricResult:
    """sacreBLEU corpus chrF++ (chrF plus word bigrams)."""
    return _sacrebleu("chrf++", CHRF(word_order=2), hyps, refs)


def compute_metrics(
    names: Sequence[str], hyps: Sequence[str], refs: Refs
) -> dict[str, MetricResult]:
    """Run the metrics ``names`` on one corpus; keys are the lowercase names."""
    fns = {name.lower(): _lookup(name) for name in names}  # fail before any work
    normalize_refs(hyps, refs)
    return {name: fn(hyps, refs) for name, (fn, _) in fns.items()}
