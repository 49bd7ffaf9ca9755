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

ROUGE-1/2/L wrap rouge-score (Porter stemming on, mean sentence F1 x 100).

Other tasks add their metrics with :func:`register_metric`::

    @register_metric("wer", higher_is_better=False)
    def corpus_wer(hyps, refs): ...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

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


@lru_cache(maxsize=8)
def _rouge_scorer(kind: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([kind], use_stemmer=True)


def _rouge(kind: str, hyps: Sequence[str], refs: Refs) -> MetricResult:
    """Mean sentence F1 of rouge-score's ``kind`` (x100), stemming on; with several
    references a sentence takes its best one (rouge-score's ``score_multi``)."""
    from importlib.metadata import version

    groups = normalize_refs(hyps, refs)
    scorer = _rouge_scorer(kind)
    total = 0.0
    for hyp, group in zip(hyps, groups):
        if len(group) == 1:
            total += scorer.score(group[0], hyp)[kind].fmeasure
        else:
            total += scorer.score_multi(group, hyp)[kind].fmeasure
    score = 100.0 * total / len(hyps)
    signature = f"rouge-score:{version('rouge-score')}|{kind}|f1|stem:yes|mean"
    return MetricResult(name=kind, score=score, signature=signature)


@register_metric("rouge1")
def rouge1(hyps: Sequence[str], refs: Refs) -> MetricResult:
    """ROUGE-1 F1 (unigrams), mean over sentences, 0-100."""
    return _rouge("rouge1", hyps, refs)


@register_metric("rouge2")
def rouge2(hyps: Sequence[str], refs: Refs) -> MetricResult:
    """ROUGE-2 F1 (bigrams), mean over sentences, 0-100."""
    return _rouge("rouge2", hyps, refs)


@register_metric("rougel")
def rouge_l(hyps: Sequence[str], refs: Refs) -> MetricResult:
    """ROUGE-L F1 (longest common subsequence), mean over sentences, 0-100."""
    return _rouge("rougeL", hyps, refs)


# Captioning: BLEU-1..4 and CIDEr-D by pycocoevalcap's scorers (the COCO caption
# evaluation code) on lower-cased captions tokenized here: its PTBTokenizer needs Java.
_CAPTION_TOKEN = re.compile(r"\w+(?:['\u2019-]\w+)*|[^\w\s]")


def caption_tokens(text: str) -> str:
    """Lower-case, split off punctuation and drop it, like the COCO PTB tokenizer:
    ``"A cat's toy, red."`` -> ``"a cat's toy red"``."""
    tokens = _CAPTION_TOKEN.findall(text.lower())
    return " ".join(t for t in tokens if any(c.isalnum() for c in t))


def _coco_inputs(hyps: Sequence[str], refs: Refs) -> tuple[dict, dict]:
    groups = normalize_refs(hyps, refs)
    gts = {i: [caption_tokens(r) for r in g] for i, g in enumerate(groups)}
    res = {i: [caption_tokens(h)] for i, h in enumerate(hyps)}
    return gts, res


@lru_cache(maxsize=4)
def _coco_bleu(key: tuple) -> tuple[float, ...]:
    from pycocoevalcap.bleu.bleu import Bleu

    hyps, refs = key
    gts, res = _coco_inputs(list(hyps), [list(r) for r in refs])
    scores, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return tuple(float(s) for s in scores)


def _bleu_n(n: int, hyps: Sequence[str], refs: Refs) -> MetricResult:
    groups = normalize_refs(hyps, refs)
    scores = _coco_bleu((tuple(hyps), tuple(tuple(g) for g in groups)))
    return MetricResult(
        name=f"bleu{n}",
        score=100.0 * scores[n - 1],
        signature=f"pycocoevalcap:Bleu(4)|n:{n}|lc|tok:words-no-punct|x100",
    )


for _n in (1, 2, 3, 4):
    register_metric(f"bleu{_n}", lambda h, r, _n=_n: _bleu_n(_n, h, r))


@register_metric("cider")
def cider_d(hyps: Sequence[str], refs: Refs) -> MetricResult:
    """CIDEr-D (pycocoevalcap's Cider: sigma 6, clipped counts, x10 inside) x 100;
    document frequencies come from the references of the scored corpus."""
    from pycocoevalcap.cider.cider import Cider

    gts, res = _coco_inputs(hyps, refs)
    score, _ = Cider().compute_score(gts, res)
    return MetricResult(
        name="cider",
        score=100.0 * float(score),
        signature="pycocoevalcap:CIDEr-D|lc|tok:words-no-punct|x100",
    )


def _jiwer(name: str, hyps: Sequence[str], refs: Refs) -> MetricResult:
    """Corpus WER/CER (x100): edits over all sentences / reference words (characters).

    Texts are scored as given: speech normalizes both sides before (see
    ``transduce.data.text_norm``). With several references the first is used.
    """
    from importlib.metadata import version

    import jiwer

    groups = normalize_refs(hyps, refs)
    ref_texts = [g[0] for g in groups]
    # jiwer rejects empty references; a space keeps the sentence (its hyp words are insertions)
    ref_texts = [r if r.strip() else " " for r in ref_texts]
    hyp_texts = [h if h.strip() else " " for h in hyps]
    if name == "wer":
        out = jiwer.process_words(ref_texts, hyp_texts)
        score = out.wer
    else:
        out = jiwer.process_characters(ref_texts, hyp_texts)
        score = out.cer
    details = f"S={out.substitutions} D={out.deletions} I={out.insertions} H={out.hits}"
    return MetricResult(
        name=name,
        score=100.0 * score,
        signature=f"jiwer:{version('jiwer')}|{name}|corpus",
        details=details,
        higher_is_better=False,
    )


@register_metric("wer", higher_is_better=False)
def corpus_wer(hyps: Sequence[str], refs: Refs) -> MetricResult:
    """Word error rate (jiwer), corpus level, 0-100+ (lower is better)."""
    return _jiwer("wer", hyps, refs)


@register_metric("cer", higher_is_better=False)
def corpus_cer(hyps: Sequence[str], refs: Refs) -> MetricResult:
    """Character error rate (jiwer; spaces count as characters), corpus level, lower is better."""
    return _jiwer("cer", hyps, refs)


def compute_metrics(
    names: Sequence[str], hyps: Sequence[str], refs: Refs
) -> dict[str, MetricResult]:
    """Run the metrics ``names`` on one corpus; keys are the lowercase names."""
    fns = {name.lower(): _lookup(name) for name in names}  # fail before any work
    normalize_refs(hyps, refs)
    return {name: fn(hyps, refs) for name, (fn, _) in fns.items()}
