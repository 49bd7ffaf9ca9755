"""Readers: error messages name file and line; sample paths resolve inside the package."""

import io

import pytest

from transduce.config import TransduceError
from transduce.data.readers import (
    read_lines,
    read_parallel_files,
    read_parallel_tsv,
    resolve_data_path,
)


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_reads_pairs_crlf_and_bom(tmp_path):
    path = write(tmp_path, "a.tsv", "\ufeffHallo Welt\tHello world\r\nJa\tYes\n".encode())
    assert read_parallel_tsv(path) == [("Hallo Welt", "Hello world"), ("Ja", "Yes")]


def test_unicode_line_separator_does_not_split(tmp_path):
    path = write(tmp_path, "a.tsv", "a\u2028b\tc\nd\te\n".encode())
    assert read_parallel_tsv(path) == [("a\u2028b", "c"), ("d", "e")]


@pytest.mark.parametrize(
    "data, line, words",
    [
        (b"a\tb\nno tab here\n", 2, "no tab"),
        (b"a\tb\nc\td\te\n", 2, "2 tabs"),
        (b"a\tb\n\tonly target\n", 2, "empty source"),
        (b"a\tb\nc\td\nsrc\t  \n", 3, "empty target"),
        (b"a\tb\n\nc\td\n", 2, "empty"),
        (b"a\tb\nc\td\ne\t\xff\xfe\n", 3, "UTF-8"),
    ],
)
def test_tsv_errors_name_file_and_line(tmp_path, data, line, words):
    path = write(tmp_path, "bad.tsv", data)
    with pytest.raises(TransduceError) as err:
        read_parallel_tsv(path)
    assert f"{path}:{line}:" in str(err.value)
    assert words in str(err.value)


def test_read_lines_keeps_empty_lines_and_names_bad_utf8(tmp_path):
    path = write(tmp_path, "in.txt", b"one\n\nthree\n")
    assert read_lines(path) == ["one", "", "three"]
    assert read_lines(io.BytesIO(b"x\ny")) == ["x", "y"]
    assert read_lines(io.StringIO("x\ny\n")) == ["x", "y"]
    bad = write(tmp_path, "bad.txt", b"ok\nok\n\xc3(\n")
    with pytest.raises(TransduceError, match=r"bad\.txt:3: not valid UTF-8"):
        read_lines(bad)


def test_parallel_files(tmp_path):
    src = write(tmp_path, "s.txt", b"a\nb\n")
    tgt = write(tmp_path, "t.txt", b"x\ny\n")
    assert read_parallel_files(src, tgt) == [("a", "x"), ("b", "y")]
    short = write(tmp_path, "short.txt", b"x\n")
    with pytest.raises(TransduceError) as err:
        read_parallel_files(src, short)
    assert "s.txt has 2 lines" in str(err.value) and "short.txt has 1" in str(err.value)
    hole = write(tmp_path, "hole.txt", b"x\n \n")
    with pytest.raises(TransduceError, match=r"hole\.txt:2: empty line"):
        read_parallel_files(src, hole)


def test_resolve_sample_and_missing(tmp_path):
    path = resolve_data_path("sample:ddtp-de-en/train.tsv")
    assert path.is_file() and path.parts[-3:] == ("samples", "ddtp-de-en", "train.tsv")
    with pytest.raises(TransduceError, match="ddtp-de-en"):
        resolve_data_path("sample:nope/train.tsv")
    with pytest.raises(TransduceError, match="missing.tsv"):
        resolve_data_path(str(tmp_path / "missing.tsv"))
    with pytest.raises(TransduceError, match="does not exist"):
        read_parallel_tsv(tmp_path / "missing.tsv")


def test_sample_is_clean():
    for split, n in (("train", 10_000), ("valid", 300), ("test", 500)):
        pairs = read_parallel_tsv(resolve_data_path(f"sample:ddtp-de-en/{split}.tsv"))
        assert len(pairs) == n
