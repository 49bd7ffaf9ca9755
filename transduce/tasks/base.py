"""What every task provides: reading, tokenizing, collating, detokenizing, metrics.

A task owns nothing else: the model, the trainer and the searches are shared.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from transduce.config import Config, ConfigError, TransduceError
from transduce.data.batching import pad_batch
from transduce.data.tokenizers import BOS_ID, EOS_ID

TASKS: dict[str, type[Task]] = {}


def register_task(name: str):
    def wrap(cls: type[Task]) -> type[Task]:
        TASKS[name] = cls
        cls.name = name
        return cls

    return wrap


def build_task(cfg: Config) -> Task:
    import transduce.tasks  # noqa: F401  (registers the built-in tasks)

    if cfg.task not in TASKS:
        raise ConfigError(f"task: unknown task '{cfg.task}' (registered: {', '.join(TASKS)})")
    return TASKS[cfg.task](cfg)


@dataclass
class Example:
    """One training or evaluation item.

    src: token ids (list of int) or a feature tensor, as the encoder expects.
    tgt: target ids without bos/eos.
    ref: the reference text the metric compares against.
    """

    src: Any
    tgt: list[int]
    ref: str
    src_text: str = ""

    @property
    def src_len(self) -> int:
        return len(self.src)


@dataclass
class Batch:
    """A padded batch. src ``(B, S)`` (or ``(B, S, F)``), masks True = real."""

    src: Tensor
    src_mask: Tensor
    tgt_in: Tensor  # (B, T): bos + target
    tgt_out: Tensor  # (B, T): target + eos, pad elsewhere
    n_tokens: int  # real target tokens, eos included
    refs: list[str] = field(default_factory=list)

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.src.to(device),
            self.src_mask.to(device),
            self.tgt_in.to(device),
            self.tgt_out.to(device),
            self.n_tokens,
            self.refs,
        )


def target_tensors(tgts: list[list[int]]) -> tuple[Tensor, Tensor, int]:
    """Targets -> (tgt_in = bos + y, tgt_out = y + eos, number of real tokens)."""
    tgt_in, _ = pad_batch([[BOS_ID, *t] for t in tgts])
    tgt_out, mask = pad_batch([[*t, EOS_ID] for t in tgts])
    return tgt_in, tgt_out, int(mask.sum())


class Task(abc.ABC):
    """Base class; see :class:`transduce.tasks.translation.TranslationTask`."""

    name = "task"
    metric_names: tuple[str, ...] = ()
    # The metric that picks the best checkpoint when train.early_stop_metric is a task default.
    higher_is_better: dict[str, bool] = {}

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    # tokenizers / vocabularies -------------------------------------------------
    @abc.abstractmethod
    def fit(self, train_items: list) -> None:
        """Build tokenizers from the training items."""
        raise NotImplementedError

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        raise NotImplementedError

    @abc.abstractmethod
    def load(self, directory: Path) -> None:
        raise NotImplementedError

    @property
    @abc.abstractmethod
    def src_vocab_size(self) -> int:
        raise NotImplementedError

    @property
    @abc.abstractmethod
    def tgt_vocab_size(self) -> int:
        raise NotImplementedError

    # data ----------------------------------------------------------------------
    @abc.abstractmethod
    def read_split(self, split: str) -> list:
        raise NotImplementedError

    def iter_split(self, split: str) -> Iterator:
        """The items of ``split`` one at a time (``transduce data binarize`` streams a
        corpus larger than memory through this). Tasks that can read their files line by
        line override it; the default reads the whole split."""
        yield from self.read_split(split)

    # Whether the task's examples are token ids on both sides, so that a corpus can be
    # binarized into memory-mapped shards (``transduce data binarize``).
    binarizable: bool = False

    @abc.abstractmethod
    def examples(self, items: list, train: bool = False) -> list[Example]:
        raise NotImplementedError

    @abc.abstractmethod
    def collate(self, examples: list[Example], train: bool = False) -> Batch:
        raise NotImplementedError

    def read_inputs(self, files: list[str]) -> Iterator:
        """What ``transduce predict MODEL FILE...`` decodes: by default each line of each
        file is one input (text tasks); tasks whose inputs are files (images, audio)
        return the paths themselves."""
        from transduce.data.readers import read_lines

        for f in files:
            yield from read_lines(f)

    @abc.abstractmethod
    def encode_inputs(self, inputs: list) -> tuple[Tensor, Tensor]:
        """Raw inputs (texts, paths) -> ``src``, ``src_mask`` for the encoder."""
        raise NotImplementedError

    @abc.abstractmethod
    def input_lengths(self, inputs: list) -> list[int]:
        raise NotImplementedError

    @abc.abstractmethod
    def detokenize(self, ids: list[int]) -> str:
        raise NotImplementedError

    def output_text(self, ids: list[int], source) -> str:
        """Output ids -> text, knowing the raw input they came from (its text, or
        ``Example.src_text``). Tasks whose outputs copy from the input (extended ids
        for out-of-vocabulary source words) override this; the default ignores it."""
        return self.detokenize(ids)

    def output_tokens(self, ids: list[int], source) -> list[str]:
        """One display label per output id (alignment plots, the demo page)."""
        return [self.output_text([i], source) for i in ids]

    def source_view(self, item) -> Any:
        """What an alignment plot draws the source as: text tasks return the source
        tokens the encoder reads (one label per attention column); image and audio
        tasks return the picture ``uint8 (3, H, W)`` or the features ``(N, n_mels)``."""
        raise NotImplementedError(f"task '{self.name}' has no source view for plots")

    def search_options(self, n: int) -> dict:
        """Extra arguments for the searches when decoding ``n`` inputs: ``prefix`` (a
        forced target prefix per input) and ``processors`` (logit processors). Whisper
        models use them for their prompt and suppressed tokens; by default none."""
        return {}

    # whether split_input honours decode.split_sentences (text inputs made of sentences)
    splits_sentences = False

    def split_input(self, item, dcfg=None):
        """The pieces one raw input is decoded in; their outputs are joined with spaces.
        Tasks whose inputs can outgrow the model (long recordings) cut them here, and
        translation cuts inputs into sentences when ``dcfg.split_sentences`` names a
        language."""
        return [item]

    # A task may print a baseline beneath its metrics in `transduce evaluate`
    # (the lead baseline for summarization, nearest neighbour for captioning).
    baseline_name: str | None = None

    def baseline(self, examples: list[Example]) -> list[str] | None:
        """Outputs of the task's baseline for ``examples``, or None when it has none."""
        return None

    @abc.abstractmethod
    def score(self, hyps: list[str], refs: list[str]) -> dict:
        raise NotImplementedError


def read_split_nonempty(task: Task, split: str) -> list:
    """``task.read_split(split)``, refusing a split that holds no example (naming its file)."""
    items = task.read_split(split)
    if not items:
        source = getattr(task.cfg.data, split, None)
        raise TransduceError(
            f"data.{split}: {source} holds no examples; fill it, or point data.{split} at "
            "another file"
        )
    return items
