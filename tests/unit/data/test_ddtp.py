"""DDTP parser, pairing, dedup and split on a hand-written lz4 Translation snippet."""

import json

import lz4.frame
import pytest

from transduce.config import TransduceError
from transduce.data.readers import read_parallel_tsv
from transduce.data.sources import ddtp

EN = """\
Package: foo
Description-md5: 00000000000000000000000000000001
Description-en: fast   text editor
 Foo is a text editor
 for the console.
 .
 Features:
  * syntax highlighting
  - undo
 .
 This package contains the binary.

Package: bar
Description-md5: 00000000000000000000000000000002
Description-en: library for bars
 Bar draws bars.
 .
 Second paragraph.

Package: bar-dev
Description-md5: 00000000000000000000000000000003
Description-en: library for bars
 Bar draws bars.

Package: only-en
Description-md5: 00000000000000000000000000000004
Description-en: untranslated
"""

DE = """\
Package: foo
Description-md5: 00000000000000000000000000000001
Description-de: schneller Texteditor
 Foo ist ein Texteditor
 für die Konsole.
 .
 Funktionen:
  * Syntaxhervorhebung
  - Rückgängig
 \u00a0
 .
 Dieses Paket enthält das Programm.

Package: bar
Description-md5: 00000000000000000000000000000002
Description-de: Bibliothek für Balken
 Bar zeichnet Balken. Ein einziger Absatz.

Package: bar-dev
Description-md5: 00000000000000000000000000000003
Description-de: Bibliothek für Balken
 Bar zeichnet Balken.
"""


@pytest.fixture(autouse=True)
def no_apt(monkeypatch):
    """Tests must never fetch: any apt call fails loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected subprocess call: {args}")

    monkeypatch.setattr(ddtp.subprocess, "run", refuse)


@pytest.fixture
def lists(tmp_path):
    for lang, text in (("en", EN), ("de", DE)):
        path = tmp_path / f"deb.debian.org_debian_dists_bookworm_main_i18n_Translation-{lang}.lz4"
        path.write_bytes(lz4.frame.compress(text.encode("utf-8")))
    return tmp_path


def test_read_translation_file(lists):
    records = ddtp.read_language(lists, "en")
    foo = records["00000000000000000000000000000001"]
    assert foo.package == "foo" and foo.synopsis == "fast text editor"
    assert foo.paragraphs == [
        "Foo is a text editor for the console.",
        "Features: * syntax highlighting - undo",
        "This package contains the binary.",
    ]
    assert records["00000000000000000000000000000004"].paragraphs == []
    assert len(records) == 4


def test_pairing_and_dedup(lists):
    src, tgt = ddtp.read_language(lists, "de"), ddtp.read_language(lists, "en")
    pairs = ddtp.pair_records(src, tgt)
    assert pairs == [
        ("schneller Texteditor", "fast text editor"),
        ("Foo ist ein Texteditor für die Konsole.", "Foo is a text editor for the console."),
        ("Funktionen: * Syntaxhervorhebung - Rückgängig", "Features: * syntax highlighting - undo"),
        ("Dieses Paket enthält das Programm.", "This package contains the binary."),
        # bar: paragraph counts differ (1 vs 2), so only the synopsis pairs
        ("Bibliothek für Balken", "library for bars"),
        # bar-dev: the synopsis is a duplicate and is dropped
        ("Bar zeichnet Balken.", "Bar draws bars."),
    ]


def test_prepare_writes_splits_and_card(lists, tmp_path):
    out = tmp_path / "out"
    card = ddtp.prepare_ddtp("de-en", out, lists_dir=lists, log=lambda _: None)
    splits = {name: read_parallel_tsv(out / f"{name}.tsv") for name in ("train", "valid", "test")}
    assert sum(len(p) for p in splits.values()) == 6
    assert card["counts"] == {name: len(p) for name, p in splits.items()}
    assert json.loads((out / "card.json").read_text())["pair"] == "de-en"
    for name, pairs in splits.items():
        assert all(ddtp.split_of(s) == name for s, _ in pairs)
    assert not list(out.glob("*.tmp"))
    # reversed direction works too
    card = ddtp.prepare_ddtp("en-de", tmp_path / "rev", lists_dir=lists, log=lambda _: None)
    assert sum(card["counts"].values()) == 6


def test_split_is_deterministic_and_proportional():
    names = [ddtp.split_of(f"sentence {i}") for i in range(20000)]
    assert names == [ddtp.split_of(f"sentence {i}") for i in range(20000)]
    for split in ("valid", "test"):
        assert 0.01 < names.count(split) / len(names) < 0.02


def test_bad_pair_and_missing_files(tmp_path):
    with pytest.raises(TransduceError, match="de-en"):
        ddtp.check_pair("de-xx")
    with pytest.raises(TransduceError, match="Translation-de"):
        ddtp.read_language(tmp_path, "de")


def test_fetch_skipped_when_files_exist(lists):
    assert ddtp.fetch(lists, log=lambda _: None, langs=("de", "en")) == lists


def test_corrupt_lz4(tmp_path):
    path = tmp_path / "x_main_i18n_Translation-en.lz4"
    path.write_bytes(b"not lz4")
    with pytest.raises(TransduceError, match="lz4"):
        ddtp.read_translation_file(path)


def test_cli_data_prepare_ddtp(lists, tmp_path, capsys):
    from transduce.cli import main

    out = tmp_path / "prepared"
    args = ["data", "prepare", "ddtp", "--pair", "de-en", "--lists-dir", str(lists)]
    assert main([*args, "--out", str(out)]) == 0
    card = json.loads((out / "card.json").read_text())
    total = sum(len(read_parallel_tsv(out / f"{s}.tsv")) for s in ("train", "valid", "test"))
    assert total == sum(card["counts"].values()) > 0
    assert main(["data", "prepare", "ddtp", "--pair", "xx-en", "--lists-dir", str(lists)]) == 2
    assert "xx-en" in capsys.readouterr().err
