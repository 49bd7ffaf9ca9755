"""Real data sets, one module each: how they are fetched and prepared."""

from __future__ import annotations

import shutil
from pathlib import Path

from transduce.config import TransduceError
from transduce.paths import install_folder, is_data_set, temp_folder_beside

SPLITS = ("train", "valid", "test")

SOURCES = ("ddtp", "debian-summaries", "tuxpaint", "emoji", "speech-tts", "asterisk")


def _default_out(name: str, options: dict) -> Path:
    if name == "ddtp":
        return Path("data") / f"ddtp-{options.get('pair') or 'de-en'}"
    if name == "debian-summaries":
        return Path("data") / f"debian-summaries-{options.get('lang') or 'en'}"
    return Path("data") / name


def _count(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, dict) and isinstance(value.get("clips"), int):
        return value["clips"]
    return None


def prepare_source(name: str, out: Path | None, options: dict) -> dict:
    """Prepare data set ``name`` into ``out`` (default ``data/<name>``); return its card.

    The set is written into a folder beside ``out`` and moved into place only when it
    is complete and holds examples; an existing ``out`` is replaced only
    when it is a data set this command made (it has ``card.json``).
    """
    if name not in SOURCES:
        raise TransduceError(f"unknown data set '{name}' (known: {', '.join(SOURCES)})")
    out = Path(out) if out else _default_out(name, options)
    if out.exists() and not out.is_dir():
        raise TransduceError(f"--out {out} exists and is not a folder; choose another")
    if out.is_dir() and any(out.iterdir()) and not is_data_set(out):
        raise TransduceError(
            f"--out {out} exists, is not empty and is not a data set made by `transduce data "
            "prepare` (no card.json); choose another --out"
        )
    tmp = temp_folder_beside(out, "--out")
    try:
        card = _prepare(name, tmp, options)
        counts = card.get("counts") if isinstance(card, dict) else None
        sizes = [_count(v) for k, v in (counts or {}).items() if k in SPLITS]
        if sizes and all(n == 0 for n in sizes):
            raise TransduceError(
                f"data set '{name}' would hold no examples (counts: {counts}); check its "
                "input (e.g. that --lists-dir holds Translation files for the pair)"
            )
        install_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def _prepare(name: str, out: Path, options: dict) -> dict:
    lists = options.get("lists_dir")
    lists_dir = Path(lists) if lists else None
    if name == "ddtp":
        from transduce.data.sources.ddtp import prepare_ddtp

        pair = options.get("pair") or "de-en"
        return prepare_ddtp(pair, out, lists_dir)
    if name == "debian-summaries":
        from transduce.data.sources.debian_summaries import check_lang, prepare_summaries

        lang = check_lang(options.get("lang") or "en")
        return prepare_summaries(
            out,
            lang,
            lists_dir,
            max_src_words=options.get("max_src_words") or 400,
        )
    if name == "tuxpaint":
        from transduce.data.sources.tuxpaint import prepare_tuxpaint

        return prepare_tuxpaint(out)
    if name == "emoji":
        from transduce.data.sources.emoji import prepare_emoji

        return prepare_emoji(out)
    if name == "speech-tts":
        from transduce.data.sources.speech_tts import prepare_speech_tts

        return prepare_speech_tts(out)
    if name == "asterisk":
        from transduce.data.sources.asterisk import prepare_asterisk

        return prepare_asterisk(out)
    raise TransduceError(f"unknown data set '{name}' (known: {', '.join(SOURCES)})")
