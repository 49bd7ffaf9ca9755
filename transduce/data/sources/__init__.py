"""Real data sets, one module each: how they are fetched and prepared."""

from __future__ import annotations

from pathlib import Path

from transduce.config import TransduceError

SOURCES = ("ddtp", "debian-summaries", "tuxpaint", "emoji", "speech-tts", "asterisk")


def prepare_source(name: str, out: Path | None, options: dict) -> dict:
    """Prepare data set ``name`` into ``out`` (default ``data/<name>``); return its card."""
    lists = options.get("lists_dir")
    lists_dir = Path(lists) if lists else None
    if name == "ddtp":
        from transduce.data.sources.ddtp import prepare_ddtp

        pair = options.get("pair") or "de-en"
        return prepare_ddtp(pair, out or Path("data") / f"ddtp-{pair}", lists_dir)
    if name == "debian-summaries":
        from transduce.data.sources.debian_summaries import check_lang, prepare_summaries

        lang = check_lang(options.get("lang") or "en")
        return prepare_summaries(
            out or Path("data") / f"debian-summaries-{lang}",
            lang,
            lists_dir,
            max_src_words=options.get("max_src_words") or 400,
        )
    if name == "tuxpaint":
        from transduce.data.sources.tuxpaint import prepare_tuxpaint

        return prepare_tuxpaint(out or Path("data") / "tuxpaint")
    if name == "emoji":
        from transduce.data.sources.emoji import prepare_emoji

        return prepare_emoji(out or Path("data") / "emoji")
    if name == "speech-tts":
        from transduce.data.sources.speech_tts import prepare_speech_tts

        return prepare_speech_tts(out or Path("data") / "speech-tts")
    if name == "asterisk":
        from transduce.data.sources.asterisk import prepare_asterisk

        return prepare_asterisk(out or Path("data") / "asterisk")
    raise TransduceError(f"unknown data set '{name}' (known: {', '.join(SOURCES)})")
