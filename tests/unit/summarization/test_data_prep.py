"""debian-summaries preparation on a hand-written Translation snippet."""

from __future__ import annotations

import json

import lz4.frame
import pytest

from transduce.config import TransduceError
from transduce.data.readers import read_parallel_tsv
from transduce.data.sources import ddtp, debian_summaries

EN = """\
Package: foo
Description-md5: 00000000000000000000000000000001
Description-en: fast   text editor
 Foo is a text editor
 for the console, written in C.
 .
 Features:
  * syntax highlighting
  - undo
 .
 This package contains the binary.

Package: foo-dbg
Description-md5: 00000000000000000000000000000002
Description-en: debug symbols for foo
 Foo is a text editor
 for the console, written in C.
 .
 Features:
  * syntax highlighting
  - undo
 .
 This package contains the binary.

Package: short
Description-md5: 00000000000000000000000000000003
Description-en: too short
 Only five words are here.

Package: bar
Description-md5: 00000000000000000000000000000004
Description-en: library for drawing bars
 Bar draws bars of every colour, shape and size on any kind of screen, fast.
"""


@pytest.fixture(autouse=True)
def no_apt(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected subprocess call: {args}")

    monkeypatch.setattr(ddtp.subprocess, "run", refuse)


@pytest.fixture
def lists(tmp_path):
    path = tmp_path / "deb.debian.org_debian_dists_bookworm_main_i18n_Translation-en.lz4"
    path.write_bytes(lz4.frame.compress(EN.encode("utf-8")))
    return tmp_path


def test_pairs_filter_dedup_and_separator(lists):
    records = ddtp.read_language(lists, "en").values()
    pairs = debian_summaries.summary_pairs(records)
    assert pairs == [
        (
            "Foo is a text editor for the console, written in C. <p> Features: * syntax "
            "highlighting - undo <p> This package contains the binary.",
            "fast text editor",
        ),
        # foo-dbg repeats foo's document: dropped; "short" has fewer than 10 words
        (
            "Bar draws bars of every colour, shape and size on any kind of screen, fast.",
            "library for drawing bars",
        ),
    ]


def test_prepare_writes_splits_card_and_counts_long_documents(lists, tmp_path):
    out = tmp_path / "out"
    card = debian_summaries.prepare_summaries(
        out, "en", lists_dir=lists, max_src_words=16, log=lambda _: None
    )
    splits = {s: read_parallel_tsv(out / f"{s}.tsv") for s in ("train", "valid", "test")}
    assert sum(len(p) for p in splits.values()) == 2
    assert card["counts"] == {s: len(p) for s, p in splits.items()}
    assert card["longer_than_max_src_words"] == 1  # foo: 22 words, bar: 15
    assert json.loads((out / "card.json").read_text())["lang"] == "en"
    for name, pairs in splits.items():
        assert all(ddtp.split_of(doc) == name for doc, _ in pairs)
    assert not list(out.glob("*.tmp"))


def test_cli_prepare_and_bad_language(lists, tmp_path, capsys):
    from transduce.cli import main

    out = tmp_path / "cli"
    args = ["data", "prepare", "debian-summaries", "--lists-dir", str(lists)]
    assert main([*args, "--lang", "en", "--out", str(out)]) == 0
    assert (out / "card.json").is_file()
    assert main([*args, "--lang", "xx"]) == 2
    assert "xx" in capsys.readouterr().err
    with pytest.raises(TransduceError, match="unknown language"):
        debian_summaries.check_lang("xx")
