"""Machine translation: TSV pairs in, subword or character tokens, BLEU and chrF."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from torch import Tensor

from transduce.data.batching import pad_batch
from transduce.data.readers import iter_parallel_tsv, read_parallel_tsv, resolve_data_path
from transduce.data.tokenizers import (
    SentencePieceTokenizer,
    build_tokenizers,
    load_tokenizers,
    save_tokenizers,
)
from transduce.evaluation.metrics import compute_metrics
from transduce.tasks.base import Batch, Example, Task, register_task, target_tensors

log = logging.getLogger(__name__)


def split_sentences(text: str, language: str) -> list[str]:
    """``text``'s sentences by pysbd's rules for ``language``, stripped; ``[text]`` when
    it holds none (blank text)."""
    import pysbd

    # a segmenter keeps the text it works on: one per call, so server threads can share
    # nothing (making one takes about a microsecond)
    segmenter = pysbd.Segmenter(language=language, clean=False)
    pieces = [s.strip() for s in segmenter.segment(text)]
    return [s for s in pieces if s] or [text]


@register_task("translation")
class TranslationTask(Task):
    """Text to text. Items are ``(source, target)`` string pairs."""

    metric_names = ("bleu", "chrf")
    higher_is_better = {"bleu": True, "chrf": True, "loss": False}

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.src_tok = None
        self.tgt_tok = None

    # tokenizers ------------------------------------------------------------------
    def fit(self, train_items: list[tuple[str, str]]) -> None:
        src_texts = [s for s, _ in train_items]
        tgt_texts = [t for _, t in train_items]
        self.src_tok, self.tgt_tok = build_tokenizers(self.cfg.tokenizer, src_texts, tgt_texts)

    def save(self, directory: Path) -> None:
        save_tokenizers(Path(directory), self.src_tok, self.tgt_tok, self.cfg.tokenizer.shared)

    def load(self, directory: Path) -> None:
        self.src_tok, self.tgt_tok = load_tokenizers(Path(directory))

    @property
    def src_vocab_size(self) -> int:
        return self.src_tok.vocab_size

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt_tok.vocab_size

    # data ------------------------------------------------------------------------
    binarizable = True

    def _split_path(self, split: str) -> Path:
        spec = getattr(self.cfg.data, split)
        if not spec:
            from transduce.config import ConfigError

            raise ConfigError(f"data.{split} is not set in the config")
        return resolve_data_path(spec)

    def read_split(self, split: str) -> list[tuple[str, str]]:
        return read_parallel_tsv(self._split_path(split))

    def iter_split(self, split: str) -> Iterator[tuple[str, str]]:
        yield from iter_parallel_tsv(self._split_path(split))

    def examples(self, items: list[tuple[str, str]], train: bool = False) -> list[Example]:
        max_src, max_tgt = self.cfg.data.max_src_len, self.cfg.data.max_tgt_len
        out = []
        for src, tgt in items:
            src_ids = self.src_tok.encode(src)[:max_src]
            tgt_ids = self.tgt_tok.encode(tgt)
            if train:
                tgt_ids = tgt_ids[:max_tgt]
            out.append(Example(src=src_ids, tgt=tgt_ids, ref=tgt, src_text=src))
        return out

    def collate(self, examples: list[Example], train: bool = False) -> Batch:
        src, src_mask = pad_batch([e.src for e in examples])
        tgt_in, tgt_out, n_tokens = target_tensors([e.tgt for e in examples])
        return Batch(src, src_mask, tgt_in, tgt_out, n_tokens, [e.ref for e in examples])

    def encode_inputs(self, inputs: list[str]) -> tuple[Tensor, Tensor]:
        max_src = self.cfg.data.max_src_len
        ids = [self.src_tok.encode(text) for text in inputs]
        long = sum(len(i) > max_src for i in ids)
        if long:
            log.warning("%d input(s) longer than %d tokens were truncated", long, max_src)
        return pad_batch([i[:max_src] for i in ids])

    def source_view(self, item: str) -> list[str]:
        """The source pieces the encoder reads (truncated as in ``encode_inputs``)."""
        return self.src_tok.tokens(item)[: self.cfg.data.max_src_len]

    def output_tokens(self, ids: list[int], source) -> list[str]:
        """Subword pieces as the tokenizer writes them (``▁`` starts a word), so the
        page and the plots can show where words begin; other tokenizers: their words."""
        if isinstance(self.tgt_tok, SentencePieceTokenizer):
            return self.tgt_tok.tokens_of(ids)
        return super().output_tokens(ids, source)

    splits_sentences = True

    def split_input(self, item: str, dcfg=None) -> list[str]:
        """``item`` whole, or its sentences when ``dcfg.split_sentences`` names a language
        (pysbd's rules: abbreviations, numbers and quotes do not end a sentence). A model
        trained on sentences translates a paragraph better sentence by sentence."""
        language = getattr(dcfg, "split_sentences", "")
        if not language:
            return [item]
        return split_sentences(item, language)

    def input_lengths(self, inputs: list[str]) -> list[int]:
        return [len(text) for text in inputs]

    def detokenize(self, ids: list[int]) -> str:
        return self.tgt_tok.decode(ids)

    baseline_name = "copy: the source sentence itself (names and numbers often pass unchanged)"

    def baseline(self, examples: list[Example]) -> list[str]:
        return [e.src_text for e in examples]

    def score(self, hyps: list[str], refs: list[str]) -> dict:
        return compute_metrics(self.metric_names, hyps, refs)
