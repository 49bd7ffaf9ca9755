"""The text normalizer of speech recognition, used for training targets AND scoring.

A recognizer cannot hear capital letters or commas, and "42" may be read "forty-two",
so references and training targets are both put in one spoken form:

1. Unicode NFKC; curly apostrophes (’ ‘ ʼ) become ``'``.
2. Numbers become words with ``num2words`` (English): ordinals ``1st`` ->
   ``first``, decimals ``3.5`` -> ``three point five``, thousands separators
   ``1,000`` are dropped, ``%`` -> ``percent``, ``&`` -> ``and``. Hyphens inside
   the words num2words writes become spaces (``twenty-one`` -> ``twenty one``).
3. Lower case.
4. Every character that is not a letter, a digit or an apostrophe becomes a space;
   apostrophes survive only inside words (``it's``, ``o'clock``), so quotes are
   removed.
5. Whitespace is collapsed and trimmed.

Examples (these are tested)::

    >>> normalize_text("Hello, World!")
    'hello world'
    >>> normalize_text("It's 4 o’clock.")
    "it's four o'clock"
    >>> normalize_text("Version 3.5 costs 1,000 dollars")
    'version three point five costs one thousand dollars'
    >>> normalize_text("The 21st century & 50% more")
    'the twenty first century and fifty percent more'
    >>> normalize_text("  GNU/Linux   'tools' -- x86_64 ")
    'gnu linux tools x eighty six sixty four'
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_THOUSANDS = re.compile(r"\b(\d{1,3})(?:,(\d{3}))+\b")
_DECIMAL = re.compile(r"(\d+)\.(\d+)")
_NUMBER = re.compile(r"\d+")
_NOT_WORD = re.compile(r"[^\w']|_")
_LONE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def _words(n: int, ordinal: bool = False) -> str:
    text = num2words(n, lang="en", to="ordinal" if ordinal else "cardinal")
    return f" {text.replace('-', ' ').replace(',', ' ')} "


def _decimal(match: re.Match) -> str:
    digits = " ".join(_words(int(d)).strip() for d in match.group(2))
    return f"{_words(int(match.group(1)))} point {digits} "


def normalize_text(text: str) -> str:
    """Spoken form of ``text``: see the module docstring for the exact rules."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    text = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _ORDINAL.sub(lambda m: _words(int(m.group(1)), ordinal=True), text)
    text = _DECIMAL.sub(_decimal, text)
    text = text.replace("%", " percent ").replace("&", " and ")
    text = _NUMBER.sub(lambda m: _words(int(m.group(0))), text)
    text = _NOT_WORD.sub(" ", text.lower())
    text = _LONE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


__all__ = ["normalize_text"]
