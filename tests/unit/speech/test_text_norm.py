"""The normalizer's documented examples (also its doctest)."""

import doctest

import pytest

from transduce.data import text_norm
from transduce.data.text_norm import normalize_text


def test_doctest_examples():
    assert doctest.testmod(text_norm).failed == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", "hello world"),
        ("It's 4 o’clock.", "it's four o'clock"),
        ("Version 3.5 costs 1,000 dollars", "version three point five costs one thousand dollars"),
        ("The 21st century & 50% more", "the twenty first century and fifty percent more"),
        ("Please press 1, then #.", "please press one then"),
        ("  multiple\t spaces\n", "multiple spaces"),
        ("", ""),
    ],
)
def test_examples(text, expected):
    assert normalize_text(text) == expected
    assert normalize_text(expected) == expected  # idempotent
