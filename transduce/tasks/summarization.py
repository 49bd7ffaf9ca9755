"""Summarization: a long document in, a short summary out; ROUGE-1/2/L and a lead baseline.

Data are TSV pairs ``document<TAB>summary`` (see
:mod:`transduce.data.sources.debian_summaries`). A document keeps its paragraph
breaks as the separator token ``<p>`` (`` <p> `` between paragraphs), so a
document is one line. Everything else is translation's: tokenizers, collating,
truncation to ``data.max_src_len`` with a warning at prediction.

With ``model.decoder.copy: true`` and ``tokenizer.type: word`` the task uses
*extended ids*: each document's out-of-vocabulary words get ids ``V, V+1, ...``
(a summary word that is OOV but in the document gets the same id), so a copy
decoder can write words that are not in the vocabulary; :meth:`output_text`
maps them back to the document's words.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from torch import Tensor

from transduce.config import ConfigError, TransduceError
from transduce.data.batching import pad_batch
from transduce.data.tokenizers import WordTokenizer, split_words
from transduce.tasks.base import Example, register_task
from transduce.tasks.translation import TranslationTask

log = logging.getLogger(__name__)

SEPARATOR = "<p>"  # paragraph break inside a one-line document


def document_text(text: str) -> str:
    """A raw text (e.g. a whole file) -> one document line.

    Paragraphs (split at blank lines) have their whitespace collapsed and are
    joined with `` <p> ``; empty paragraphs vanish.
    """
    paragraphs, current = [], []
    for line in text.splitlines():
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return f" {SEPARATOR} ".join(" ".join(p.split()) for p in paragraphs)


def lead(document: str, n_words: int) -> str:
    """The first ``n_words`` words of ``document``, separators skipped."""
    return " ".join([w for w in document.split() if w != SEPARATOR][:n_words])


@register_task("summarization")
class SummarizationTask(TranslationTask):
    """Text to shorter text. Items are ``(document, summary)`` string pairs."""

    metric_names = ("rouge1", "rouge2", "rougel")
    higher_is_better = {"rouge1": True, "rouge2": True, "rougel": True, "loss": False}
    baseline_name = "lead"
    splits_sentences = False  # a summary reads the whole document, not one sentence at a time

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.copy = bool(cfg.model.decoder.get("copy", False))
        if self.copy and not cfg.tokenizer.shared:
            raise ConfigError(
                "model.decoder.copy: true needs tokenizer.shared: true (copied source "
                "tokens must be target tokens)"
            )

    @property
    def extended(self) -> bool:
        """Whether ids of OOV source words are extended (copy decoder + word tokenizer)."""
        return self.copy and isinstance(self.src_tok, WordTokenizer)

    # data ------------------------------------------------------------------------
    def examples(self, items: list[tuple[str, str]], train: bool = False) -> list[Example]:
        if not self.extended:
            return super().examples(items, train)
        max_src, max_tgt = self.cfg.data.max_src_len, self.cfg.data.max_tgt_len
        out = []
        for src, tgt in items:
            src_ids, oovs = self.src_tok.encode_extended(src, max_src)
            tgt_ids = self.tgt_tok.encode_target(tgt, oovs)
            if train:
                tgt_ids = tgt_ids[:max_tgt]
            out.append(Example(src=src_ids, tgt=tgt_ids, ref=tgt, src_text=src))
        return out

    def encode_inputs(self, inputs: list[str]) -> tuple[Tensor, Tensor]:
        if not self.extended:
            return super().encode_inputs(inputs)
        max_src = self.cfg.data.max_src_len
        long = sum(len(self.src_tok.encode(text)) > max_src for text in inputs)
        if long:
            log.warning("%d input(s) longer than %d tokens were truncated", long, max_src)
        return pad_batch([self.src_tok.encode_extended(text, max_src)[0] for text in inputs])

    def output_text(self, ids: list[int], source: str) -> str:
        """Ids -> summary; extended ids become the words of ``source`` they stand for."""
        if not self.extended:
            return self.detokenize(ids)
        _, oovs = self.src_tok.encode_extended(source, self.cfg.data.max_src_len)
        return self.tgt_tok.decode(ids, oovs)

    def source_view(self, item: str) -> list[str]:
        """The source words (with copy: out-of-vocabulary words as written)."""
        if not self.extended:
            return super().source_view(item)
        return split_words(item)[: self.cfg.data.max_src_len]

    def read_documents(self, files: list[str]) -> Iterator[str]:
        """Each whole file is one document (``transduce predict --docs``)."""
        for f in files:
            try:
                text = Path(f).read_text(encoding="utf-8")
            except OSError as e:
                raise TransduceError(f"cannot read {f}: {e.strerror or e}") from None
            except UnicodeDecodeError as e:
                raise TransduceError(f"{f}: not UTF-8 at byte {e.start}") from None
            doc = document_text(text)
            if not doc:
                raise TransduceError(f"{f}: the document is empty")
            yield doc

    # baseline --------------------------------------------------------------------
    def baseline(self, examples: list[Example]) -> list[str]:
        """Lead-N: the first N words of each document, N = the references' mean length."""
        if not examples:
            return []
        n = max(1, round(sum(len(e.ref.split()) for e in examples) / len(examples)))
        return [lead(e.src_text, n) for e in examples]
