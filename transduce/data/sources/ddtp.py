"""Debian Description Translation Project (DDTP): parallel package descriptions.

Debian ships every package description in English plus community translations in
``Translation-<lang>`` files (RFC-822 records, lz4-compressed). Records in two
languages describe the same English text when their ``Description-md5`` match, so
pairing by md5 gives sentence-level (synopsis) and paragraph-level parallel text.

Fetching uses apt with a private lists folder (a later plain ``apt-get update``
would delete translation files from the default one)::

    apt-get update -o Dir::State::Lists=<dir> -o Acquire::Languages=en,de,fr,es

``read_translation_file`` is general (package, synopsis, paragraphs) so other tasks,
such as summarization (long description -> synopsis), reuse it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import random
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import lz4.frame

from transduce.config import TransduceError

LANGUAGES = ("en", "de", "fr", "es")
DEFAULT_LISTS_DIR = Path("~/.cache/transduce/ddtp/lists")
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "samples" / "ddtp-de-en"
VALID_PERMILLE = 15  # 1.5% of sources go to valid, the next 1.5% to test
TEST_PERMILLE = 15
LICENCE = (
    "Package descriptions and their translations come from the Debian archive "
    "(Translation-<lang> files, bookworm suites), produced by package maintainers and the "
    "Debian Description Translation Project (https://ddtp.debian.org). Debian distributes "
    "each description as part of its package, so each text is covered by the licence of "
    "the package it describes (free-software licences per the Debian Free Software "
    "Guidelines); translations submitted through DDTP are contributed for use in Debian "
    "under those same terms. No single licence covers the whole set: check the package's "
    "debian/copyright before redistributing a particular text."
)


@dataclass
class Record:
    """One package description in one language."""

    package: str
    synopsis: str
    paragraphs: list[str] = field(default_factory=list)


def normalize_space(text: str) -> str:
    """Collapse runs of whitespace (tabs, newlines included) into single spaces."""
    return " ".join(text.split())


def _finish(fields: dict[str, str], body: list[str], path: Path, out: dict[str, Record]) -> None:
    md5 = fields.get("Description-md5")
    synopsis_key = next(
        (k for k in fields if k.startswith("Description-") and k != "Description-md5"), None
    )
    if md5 is None or synopsis_key is None:
        raise TransduceError(
            f"{path}: record for package {fields.get('Package', '?')!r} lacks a "
            "Description-md5 or Description-<lang> field"
        )
    paragraphs, current = [], []
    for line in body:
        if line.strip() == ".":
            paragraphs.append(current)
            current = []
        else:
            current.append(line.strip())
    paragraphs.append(current)
    texts = [normalize_space(" ".join(p)) for p in paragraphs]
    record = Record(
        fields.get("Package", ""), normalize_space(fields[synopsis_key]), [t for t in texts if t]
    )
    out.setdefault(md5, record)


def parse_translation_text(text: str, path: Path | str = "<text>") -> dict[str, Record]:
    """Parse the text of a ``Translation-<lang>`` file into ``{md5: Record}``.

    Long-description lines (starting with a space) are joined with spaces within a
    paragraph; a ``" ."`` line separates paragraphs. Bullet markers ("-", "*") stay.
    """
    path = Path(path)
    out: dict[str, Record] = {}
    fields: dict[str, str] = {}
    body: list[str] = []
    last_key = None
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip(" \t"):  # only ASCII blanks end a record; " \xa0" is content
            if fields:
                _finish(fields, body, path, out)
            fields, body, last_key = {}, [], None
        elif line[0] in " \t":
            if last_key is None:
                raise TransduceError(f"{path}:{lineno}: continuation line outside a record")
            if last_key.startswith("Description-") and last_key != "Description-md5":
                body.append(line)
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
            last_key = key.strip()
        else:
            raise TransduceError(f"{path}:{lineno}: expected 'Field: value', got {line[:60]!r}")
    if fields:
        _finish(fields, body, path, out)
    return out


def read_translation_file(path: Path | str) -> dict[str, Record]:
    """Read one lz4-compressed (or plain) ``Translation-<lang>`` file -> ``{md5: Record}``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = lz4.frame.decompress(raw) if path.suffix == ".lz4" else raw
        text = data.decode("utf-8")
    except OSError as e:
        raise TransduceError(f"cannot read {path}: {e}") from None
    except RuntimeError as e:  # lz4 reports corrupt frames as RuntimeError
        raise TransduceError(
            f"{path}: not a valid lz4 file ({e}); delete it and fetch again"
        ) from None
    except UnicodeDecodeError as e:
        raise TransduceError(f"{path}: not UTF-8 at byte {e.start}") from None
    return parse_translation_text(text, path)


def translation_files(lists_dir: Path, lang: str) -> list[Path]:
    """All ``*_i18n_Translation-<lang>.lz4`` files in ``lists_dir`` (suites merged), sorted."""
    return sorted(Path(lists_dir).glob(f"*_main_i18n_Translation-{lang}.lz4"))


def read_language(lists_dir: Path, lang: str) -> dict[str, Record]:
    """Merge the Translation files of every suite (bookworm, -updates, -security) for ``lang``."""
    files = translation_files(lists_dir, lang)
    if not files:
        raise TransduceError(
            f"no Translation-{lang} files in {lists_dir}; fetch them with "
            f"`apt-get update -o Dir::State::Lists={lists_dir} -o Acquire::Languages=en,de,fr,es`"
        )
    merged: dict[str, Record] = {}
    for path in files:
        for md5, record in read_translation_file(path).items():
            merged.setdefault(md5, record)
    return merged


def fetch(
    lists_dir: Path | None = None,
    log: Callable[[str], None] = print,
    langs: Iterable[str] = LANGUAGES,
) -> Path:
    """Fetch the Translation files with apt into ``lists_dir`` unless ``langs`` are there."""
    lists_dir = Path(lists_dir or DEFAULT_LISTS_DIR).expanduser()
    if lists_dir.exists() and not lists_dir.is_dir():
        raise TransduceError(f"--lists-dir {lists_dir} is a file; give a folder of apt lists")
    if all(translation_files(lists_dir, lang) for lang in langs):
        return lists_dir
    try:
        (lists_dir / "partial").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TransduceError(f"--lists-dir {lists_dir}: cannot create it ({e})") from None
    cmd = ["apt-get", "update", "-o", f"Dir::State::Lists={lists_dir}"]
    cmd += ["-o", f"Acquire::Languages={','.join(LANGUAGES)}"]
    # Empty cache paths: don't rebuild the system's package cache from our private lists.
    cmd += ["-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache="]
    log(f"fetching DDTP translations: {' '.join(cmd)}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise TransduceError("apt-get not found: DDTP data is fetched with Debian's apt") from None
    if proc.returncode != 0 or not translation_files(lists_dir, "en"):
        tail = (proc.stderr or proc.stdout).strip()[-500:]
        raise TransduceError(
            f"apt-get update failed (exit {proc.returncode}); it may need root (try sudo) "
            f"or a network connection:\n{tail}"
        )
    return lists_dir


def check_pair(pair: str) -> tuple[str, str]:
    """``"de-en"`` -> ``("de", "en")``; raises TransduceError listing the valid pairs."""
    valid = [f"{a}-{b}" for a in LANGUAGES for b in LANGUAGES if a != b]
    parts = pair.split("-")
    if pair not in valid:
        raise TransduceError(f"unknown DDTP pair '{pair}'; available pairs: {', '.join(valid)}")
    return parts[0], parts[1]


def pair_records(src: dict[str, Record], tgt: dict[str, Record]) -> list[tuple[str, str]]:
    """Parallel segments from records with the same md5, deduplicated, in source order.

    Synopsis pairs with synopsis; paragraph i with paragraph i when both sides have
    the same number of paragraphs. A source seen twice keeps its first target.
    """
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for md5, s in src.items():
        t = tgt.get(md5)
        if t is None:
            continue
        segments = [(s.synopsis, t.synopsis)]
        if len(s.paragraphs) == len(t.paragraphs):
            segments += zip(s.paragraphs, t.paragraphs)
        for a, b in segments:
            a, b = normalize_space(a), normalize_space(b)
            if not a or not b or a in seen:
                continue
            seen.add(a)
            pairs.append((a, b))
    return pairs


def split_of(source: str) -> str:
    """Deterministic split from a hash of the source text: ``train``, ``valid`` or ``test``."""
    bucket = int.from_bytes(hashlib.sha1(source.encode("utf-8")).digest()[:8], "big") % 1000
    if bucket < VALID_PERMILLE:
        return "valid"
    if bucket < VALID_PERMILLE + TEST_PERMILLE:
        return "test"
    return "train"


def split_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Group pairs into ``{"train", "valid", "test"}`` by :func:`split_of` of the source."""
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "valid": [], "test": []}
    for pair in pairs:
        splits[split_of(pair[0])].append(pair)
    return splits


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file + rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; data files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_dataset(out_dir: Path, splits: dict[str, list[tuple[str, str]]], card: dict) -> None:
    """Write ``{split}.tsv`` files, then ``card.json`` last (its presence marks a complete set)."""
    out_dir = Path(out_dir)
    (out_dir / "card.json").unlink(missing_ok=True)
    for name, pairs in splits.items():
        write_atomic(out_dir / f"{name}.tsv", "".join(f"{s}\t{t}\n" for s, t in pairs))
    write_atomic(out_dir / "card.json", json.dumps(card, indent=2, ensure_ascii=False) + "\n")


def _card(pair: str, splits: dict[str, list], files: list[Path], note: str = "") -> dict:
    card = {
        "name": f"ddtp-{pair}",
        "pair": pair,
        "source": "Debian Description Translation Project: Debian bookworm "
        "main/i18n Translation-<lang> files, paired by Description-md5",
        "files": [p.name for p in files],
        "format": "UTF-8 TSV, source<TAB>target, one pair per line",
        "counts": {name: len(p) for name, p in splits.items()},
        "split": "sha1 of the source text: 1.5% valid, 1.5% test, rest train",
        "licence": LICENCE,
        "prepared": datetime.date.today().isoformat(),
    }
    if note:
        card["note"] = note
    return card


def load_pairs(pair: str, lists_dir: Path | None = None, log: Callable[[str], None] = print):
    """Fetch if needed, read both languages and pair them -> (pairs, files read)."""
    src_lang, tgt_lang = check_pair(pair)
    lists_dir = fetch(lists_dir, log, (src_lang, tgt_lang))
    src, tgt = read_language(lists_dir, src_lang), read_language(lists_dir, tgt_lang)
    files = translation_files(lists_dir, src_lang) + translation_files(lists_dir, tgt_lang)
    return pair_records(src, tgt), files


def prepare_ddtp(
    pair: str, out_dir: Path, lists_dir: Path | None = None, log: Callable[[str], None] = print
) -> dict:
    """Prepare DDTP ``pair`` (e.g. ``"de-en"``: German source, English target) in ``out_dir``.

    Writes ``train.tsv``, ``valid.tsv``, ``test.tsv`` and ``card.json``; returns the card.
    """
    check_pair(pair)
    pairs, files = load_pairs(pair, lists_dir, log)
    splits = split_pairs(pairs)
    card = _card(pair, splits, files)
    write_dataset(Path(out_dir), splits, card)
    log(f"ddtp {pair}: {len(pairs)} unique pairs -> {out_dir} {card['counts']}")
    return card


def prepare(out_dir: Path, pair: str = "de-en", lists_dir: Path | None = None) -> dict:
    """Entry point for the data CLI: see :func:`prepare_ddtp`."""
    return prepare_ddtp(pair, Path(out_dir), lists_dir)


def _short(pairs: list[tuple[str, str]], max_words: int) -> list[tuple[str, str]]:
    return [p for p in pairs if len(p[0].split()) <= max_words and len(p[1].split()) <= max_words]


def make_sample(
    out_dir: Path = SAMPLE_DIR,
    lists_dir: Path | None = None,
    pair: str = "de-en",
    sizes: tuple[int, int, int] = (10_000, 300, 500),
    max_words: int = 25,
    seed: int = 1,
) -> dict:
    """Regenerate the embedded sample: a seeded subset of short pairs from each split.

    Pairs with both sides at most ``max_words`` words are preferred; a split with too
    few short pairs is filled up with its shortest remaining ones.
    """
    pairs, files = load_pairs(pair, lists_dir)
    splits = split_pairs(pairs)
    sample = {}
    for (name, items), size in zip(splits.items(), sizes):
        short = _short(items, max_words)
        chosen = random.Random(f"{seed}-{name}").sample(short, min(size, len(short)))
        if len(chosen) < size:
            taken = set(chosen)
            rest = sorted((p for p in items if p not in taken), key=lambda p: len(p[0].split()))
            chosen += rest[: size - len(chosen)]
        sample[name] = chosen
    note = (
        f"sample: seeded subset (seed {seed}) of each split, preferring pairs with at most "
        f"{max_words} words per side; regenerate with "
        "transduce.data.sources.ddtp.make_sample(lists_dir=...)"
    )
    card = _card(pair, sample, files, note)
    card["name"] = f"ddtp-{pair} sample"
    card["full_counts"] = {name: len(items) for name, items in splits.items()}
    write_dataset(Path(out_dir), sample, card)
    return card


SOURCES = {"ddtp": prepare}
