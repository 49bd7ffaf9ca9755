"""Debian package descriptions as summarization data: long description -> synopsis.

Every Debian package has a one-line synopsis and a long description, written by
its maintainer; DDTP's ``Translation-<lang>`` files (see :mod:`.ddtp`) hold
them in English, and translations of the same records in German, French and
Spanish. A pair is ``document<TAB>summary`` where

* the document is the long description, its paragraphs joined with the
  separator token `` <p> `` (a paragraph's lines are joined with spaces, so
  bullet markers ``*`` / ``-`` stay in place and lists stay readable);
* the summary is the synopsis.

Descriptions shorter than :data:`MIN_WORDS` words are dropped, as are
documents seen before (the first record wins; ``-dev``/``-doc`` packages often
share a description). The split is a hash of the document, so it is
deterministic and the same document always lands in the same split. Documents
longer than ``max_src_words`` are kept and counted (they are truncated at
training time to ``data.max_src_len``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from pathlib import Path

from transduce.config import TransduceError
from transduce.data.sources.ddtp import (
    LANGUAGES,
    LICENCE,
    Record,
    fetch,
    normalize_space,
    read_language,
    split_pairs,
    translation_files,
    write_dataset,
)

MIN_WORDS = 10  # descriptions shorter than this are not summarized
SEPARATOR = "<p>"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "samples" / "debian-summaries-en"


def document_of(record: Record) -> str:
    """A record's long description as one line, paragraphs joined with `` <p> ``."""
    return f" {SEPARATOR} ".join(normalize_space(p) for p in record.paragraphs if p.strip())


def n_words(document: str) -> int:
    """Words of a document, separators not counted."""
    return sum(w != SEPARATOR for w in document.split())


def summary_pairs(records: Iterable[Record], min_words: int = MIN_WORDS) -> list[tuple[str, str]]:
    """``(document, synopsis)`` pairs, deduplicated by document, in record order."""
    pairs, seen = [], set()
    for record in records:
        document, summary = document_of(record), normalize_space(record.synopsis)
        if not summary or n_words(document) < min_words or document in seen:
            continue
        seen.add(document)
        pairs.append((document, summary))
    return pairs


def check_lang(lang: str) -> str:
    if lang not in LANGUAGES:
        raise TransduceError(
            f"unknown language '{lang}' for debian-summaries; available: {', '.join(LANGUAGES)}"
        )
    return lang


def load_summary_pairs(
    lang: str, lists_dir: Path | None = None, log: Callable[[str], None] = print
) -> tuple[list[tuple[str, str]], list[Path]]:
    """Fetch if needed and read ``Translation-<lang>`` -> (pairs, files read)."""
    check_lang(lang)
    lists_dir = fetch(lists_dir, log, (lang,))
    return summary_pairs(read_language(lists_dir, lang).values()), translation_files(
        lists_dir, lang
    )


def _stats(pairs: list[tuple[str, str]]) -> dict:
    if not pairs:
        return {}
    src = sorted(n_words(d) for d, _ in pairs)
    tgt = [len(s.split()) for _, s in pairs]
    return {
        "document_words_mean": round(sum(src) / len(src), 1),
        "document_words_median": src[len(src) // 2],
        "document_words_p95": src[min(len(src) - 1, int(0.95 * len(src)))],
        "summary_words_mean": round(sum(tgt) / len(tgt), 1),
    }


def _card(lang: str, splits: dict[str, list], files: list[Path], max_src_words: int) -> dict:
    everything = [p for items in splits.values() for p in items]
    return {
        "name": f"debian-summaries-{lang}",
        "lang": lang,
        "source": "Debian bookworm main/i18n Translation-<lang> files (DDTP): long "
        "description -> synopsis of each package",
        "files": [p.name for p in files],
        "format": "UTF-8 TSV, document<TAB>summary, one pair per line; paragraphs of the "
        f"document are joined with ' {SEPARATOR} '",
        "filter": f"documents of at least {MIN_WORDS} words, deduplicated by document text",
        "counts": {name: len(p) for name, p in splits.items()},
        "max_src_words": max_src_words,
        "longer_than_max_src_words": sum(n_words(d) > max_src_words for d, _ in everything),
        "stats": _stats(everything),
        "split": "sha1 of the document: 1.5% valid, 1.5% test, rest train",
        "licence": LICENCE,
    }


def prepare_summaries(
    out_dir: Path,
    lang: str = "en",
    lists_dir: Path | None = None,
    max_src_words: int = 400,
    log: Callable[[str], None] = print,
) -> dict:
    """Write ``{train,valid,test}.tsv`` and ``card.json`` into ``out_dir``; return the card."""
    pairs, files = load_summary_pairs(lang, lists_dir, log)
    splits = split_pairs(pairs)
    card = _card(lang, splits, files, max_src_words)
    write_dataset(Path(out_dir), splits, card)
    log(
        f"debian-summaries {lang}: {len(pairs)} pairs -> {out_dir} {card['counts']}; "
        f"{card['longer_than_max_src_words']} documents longer than {max_src_words} words "
        "(truncated at training to data.max_src_len)"
    )
    return card


def make_sample(
    out_dir: Path = SAMPLE_DIR,
    lists_dir: Path | None = None,
    lang: str = "en",
    sizes: tuple[int, int, int] = (2500, 150, 150),
    max_words: int = 80,
    seed: int = 1,
) -> dict:
    """Regenerate the committed sample: a seeded subset of each split's pairs whose
    document has at most ``max_words`` words (keeps the sample small and tests fast)."""
    pairs, files = load_summary_pairs(lang, lists_dir)
    full = split_pairs(pairs)
    sample = {}
    for (name, items), size in zip(full.items(), sizes):
        short = [p for p in items if n_words(p[0]) <= max_words]
        sample[name] = random.Random(f"{seed}-{name}").sample(short, min(size, len(short)))
    card = _card(lang, sample, files, max_words)
    card["name"] = f"debian-summaries-{lang} sample"
    card["note"] = (
        f"sample: seeded subset (seed {seed}) of each split, documents of at most {max_words} "
        "words; regenerate with "
        "transduce.data.sources.debian_summaries.make_sample(lists_dir=...)"
    )
    card["full_counts"] = {name: len(items) for name, items in full.items()}
    write_dataset(Path(out_dir), sample, card)
    return card
