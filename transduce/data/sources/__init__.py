"""Real data sets, one module each: how they are fetched and prepared."""

from __future__ import annotations

from pathlib import Path

from transduce.config import TransduceError

SOURCES = ("ddtp",)


def prepare_source(name: str, out: Path | None, options: dict) -> dict:
    """Prepare data set ``name`` into ``out`` (default ``data/<name>``); return its card."""
    if name == "ddtp":
        from transduce.data.sources.ddtp import prepare_ddtp

        pair = options.get("pair") or "de-en"
        lists = options.get("lists_dir")
        return prepare_ddtp(
            pair, out or Path("data") / f"ddtp-{pair}", Path(lists) if lists else None
        )
    raise TransduceError(f"unknown data set '{name}' (known: {', '.join(SOURCES)})")
