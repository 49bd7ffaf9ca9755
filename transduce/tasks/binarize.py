"""``transduce data binarize CONFIG``: tokenize a training corpus once into memory maps.

The training split is read one line at a time, twice: the first pass keeps a uniform
sample of ``tokenizer.max_train_sentences`` items (reservoir sampling, seeded by
``train.seed``) to fit the tokenizers on; the second tokenizes every item in chunks of
:data:`CHUNK` and appends the ids to the shards of :mod:`transduce.data.binarized`.
Memory stays bounded by the sample and one chunk, whatever the corpus size. When the
corpus holds no more items than the sample, the tokenizers are fitted on the whole
corpus in order, exactly as in-memory training fits them, so a run on the binarized
corpus trains the same model bit for bit.

The folder is written beside its destination and renamed into place when complete;
``meta.json`` records what it was made from, and training refuses a folder whose
settings differ from its config (naming the keys).
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

from transduce.config import Config, ConfigError, TransduceError
from transduce.data.binarized import BinarizedExamples, ShardWriter
from transduce.paths import BINARIZED_FORMAT, is_binarized_folder, replace_folder
from transduce.tasks.base import Task, build_task

log = logging.getLogger(__name__)

FORMAT = BINARIZED_FORMAT
VERSION = 1
CHUNK = 10_000  # items tokenized at once


def fingerprint(cfg: Config) -> dict:
    """The settings that decide the token ids; a binarized folder is valid for a config
    only when these are equal."""
    return {
        "task": cfg.task,
        "data.train": str(cfg.data.train),
        "data.max_src_len": cfg.data.max_src_len,
        "data.max_tgt_len": cfg.data.max_tgt_len,
        "tokenizer": dict(sorted(cfg.tokenizer.__dict__.items())),
        "model.decoder.copy": bool(cfg.model.decoder.get("copy", False)),
    }


def _reservoir(items, k: int, seed: int) -> tuple[list, int]:
    """A uniform sample of ``k`` items in corpus order (all of them if fewer), and the count."""
    rng = random.Random(seed)
    sample: list[tuple[int, object]] = []
    n = 0
    for n, item in enumerate(items, 1):
        if len(sample) < k:
            sample.append((n, item))
        else:
            j = rng.randrange(n)
            if j < k:
                sample[j] = (n, item)
    sample.sort(key=lambda pair: pair[0])
    return [item for _, item in sample], n


def binarize(cfg: Config, out: str | Path, force: bool = False) -> dict:
    """Tokenize ``cfg.data.train`` into ``out``; returns the folder's ``meta.json``."""
    out = Path(out)
    task: Task = build_task(cfg)
    if not task.binarizable:
        raise ConfigError(
            f"task '{cfg.task}' cannot be binarized (its sources are not token ids); "
            "binarize translation or summarization corpora"
        )
    started = time.monotonic()
    meta: dict = {}

    def build(tmp: Path) -> None:
        sample, n_items = _reservoir(
            task.iter_split("train"), cfg.tokenizer.max_train_sentences, cfg.train.seed
        )
        if n_items == 0:
            raise TransduceError(f"data.train ({cfg.data.train}) holds no examples")
        task.fit(sample)
        del sample
        task.save(tmp / "vocab")
        n_src = n_tgt = 0
        with ShardWriter(tmp, "train") as writer:
            chunk: list = []
            for item in task.iter_split("train"):
                chunk.append(item)
                if len(chunk) == CHUNK:
                    n_src, n_tgt = _write(task, chunk, writer, n_src, n_tgt)
                    chunk = []
            n_src, n_tgt = _write(task, chunk, writer, n_src, n_tgt)
            count = writer.close()
        meta.update(
            format=FORMAT,
            version=VERSION,
            settings=fingerprint(cfg),
            splits={"train": {"examples": count, "src_tokens": n_src, "tgt_tokens": n_tgt}},
            tokenizer_fitted_on=min(n_items, cfg.tokenizer.max_train_sentences),
            sample_seed=cfg.train.seed,
            seconds=round(time.monotonic() - started, 1),
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")

    # refuses an existing folder unless --force and it is a binarized corpus; swaps in
    # the new folder only once it is complete
    replace_folder(out, build, force=force, is_own=is_binarized_folder, kind="binarized corpus")
    count = meta["splits"]["train"]["examples"]
    log.info("binarized %d examples into %s", count, out)
    return meta


def _write(task: Task, chunk: list, writer: ShardWriter, n_src: int, n_tgt: int):
    for e in task.examples(chunk, train=True):
        writer.add(e.src, e.tgt)
        n_src += len(e.src)
        n_tgt += len(e.tgt)
    return n_src, n_tgt


def open_binarized(cfg: Config, path: str | Path) -> BinarizedExamples:
    """The training examples of a binarized folder made for ``cfg``; refuses a folder
    whose settings differ from ``cfg``, naming each differing key."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TransduceError(
            f"data.binarized: {path} holds no meta.json; make it with "
            "`transduce data binarize CONFIG --out DIR`"
        ) from None
    except (OSError, ValueError) as e:
        raise TransduceError(f"data.binarized: cannot read {path / 'meta.json'}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TransduceError(f"data.binarized: {path} is not a binarized corpus")
    if meta.get("version") != VERSION:
        raise TransduceError(
            f"data.binarized: {path} has format version {meta.get('version')}, this transduce "
            f"reads {VERSION}; binarize the corpus again"
        )
    want, have = fingerprint(cfg), meta.get("settings", {})
    differ = [k for k in want if want[k] != have.get(k)]
    if differ:
        details = "; ".join(f"{k}: folder {have.get(k)!r}, config {want[k]!r}" for k in differ)
        raise ConfigError(
            f"data.binarized: {path} was made with other settings ({details}); "
            "binarize again with this config or restore those settings"
        )
    return BinarizedExamples(path, "train")


__all__ = ["binarize", "fingerprint", "open_binarized"]
