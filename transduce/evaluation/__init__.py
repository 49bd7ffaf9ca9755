"""Metrics: corpus-level scores by name (see :mod:`transduce.evaluation.metrics`)."""

from transduce.evaluation.metrics import (
    MetricResult,
    available_metrics,
    compute_metrics,
    corpus_bleu,
    corpus_chrf,
    is_higher_better,
    register_metric,
)

__all__ = [
    "MetricResult",
    "available_metrics",
    "compute_metrics",
    "corpus_bleu",
    "corpus_chrf",
    "is_higher_better",
    "register_metric",
]
