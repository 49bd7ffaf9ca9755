"""Reading text data: parallel TSV files, plain line files, embedded samples.

Every problem a user can cause (missing file, bad UTF-8, a line without a tab, an
empty side) raises :class:`TransduceError` naming the file and line. Nothing is
skipped silently. Lines are split on ``\\n`` only (``\\r\\n`` is accepted), so line
numbers match what an editor shows even when text holds other Unicode separators.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from transduce.config import TransduceError

SAMPLE_PREFIX = "sample:"
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


def available_samples() -> list[str]:
    """Names of the samples embedded in the package (e.g. ``ddtp-de-en``)."""
    if not SAMPLES_DIR.is_dir():
        return []
    return sorted(p.name for p in SAMPLES_DIR.iterdir() if p.is_dir())


def resolve_data_path(spec: str | Path) -> Path:
    """``"sample:ddtp-de-en/train.tsv"`` -> the file inside the package; else a filesystem path.

    Raises TransduceError when the file (or sample folder) does not exist.
    """
    text = str(spec)
    if text.startswith(SAMPLE_PREFIX):
        rel = text[len(SAMPLE_PREFIX) :].strip("/")
        path = SAMPLES_DIR / rel
        if not rel or ".." in Path(rel).parts or not path.exists():
            names = ", ".join(available_samples()) or "none"
            raise TransduceError(
                f"'{text}': no such embedded sample file (looked for {path}); "
                f"samples: {names}; use e.g. 'sample:ddtp-de-en/train.tsv'"
            )
        return path
    path = Path(text).expanduser()
    if not path.exists():
        raise TransduceError(
            f"data file '{path}' does not exist (relative paths start at {Path.cwd()}); "
            "check the path, or prepare a data set with `transduce data`"
        )
    return path


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise TransduceError(f"'{path}' is a folder, expected a text file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TransduceError(f"data file '{path}' does not exist") from None
    except OSError as e:
        raise TransduceError(f"cannot read '{path}': {e.strerror or e}") from None


def _decode_lines(data: bytes, name: str) -> list[str]:
    """UTF-8 bytes -> lines (no final empty line for a trailing newline); names a bad line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        raise TransduceError(
            f"{name}:{lineno}: not valid UTF-8 (byte {data[e.start]:#04x}); "
            "convert the file to UTF-8, e.g. with iconv"
        ) from None
    if text.startswith("\ufeff"):  # byte-order mark some editors write
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _parse_tsv_line(line: str, where: str) -> tuple[str, str]:
    """One ``source<TAB>target`` line -> (src, tgt); ``where`` is ``file:line``."""
    tabs = line.count("\t")
    if tabs == 0:
        what = "is empty" if not line.strip() else "has no tab"
        raise TransduceError(f"{where}: line {what}; expected source<TAB>target")
    if tabs > 1:
        raise TransduceError(
            f"{where}: line has {tabs} tabs; expected exactly one (source<TAB>target)"
        )
    src, tgt = (side.strip() for side in line.split("\t"))
    if not src or not tgt:
        side = "source" if not src else "target"
        raise TransduceError(f"{where}: empty {side} side; remove the line or fill it in")
    return src, tgt


def read_parallel_tsv(path: str | Path) -> list[tuple[str, str]]:
    """Read ``source<TAB>target`` lines -> list of (src, tgt), sides stripped of outer spaces.

    Raises TransduceError naming file and line for bad UTF-8, a missing tab, more than
    one tab, or an empty side.
    """
    path = Path(path)
    lines = _decode_lines(_read_bytes(path), str(path))
    return [_parse_tsv_line(line, f"{path}:{n}") for n, line in enumerate(lines, 1)]


def iter_parallel_tsv(path: str | Path) -> Iterator[tuple[str, str]]:
    """:func:`read_parallel_tsv` one line at a time, in memory bounded by the longest line.

    For corpora larger than memory (``transduce data binarize``); same checks, same
    messages.
    """
    path = Path(path)
    if path.is_dir():
        raise TransduceError(f"'{path}' is a folder, expected a text file")
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below, also when the caller stops early)
    except OSError as e:
        raise TransduceError(f"cannot read '{path}': {e.strerror or e}") from None
    with f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise TransduceError(
                    f"{path}:{n}: not valid UTF-8 (byte {raw[e.start]:#04x}); "
                    "convert the file to UTF-8, e.g. with iconv"
                ) from None
            if n == 1 and line.startswith("\ufeff"):
                line = line[1:]
            line = line.rstrip("\n")
            line = line[:-1] if line.endswith("\r") else line
            yield _parse_tsv_line(line, f"{path}:{n}")


def read_lines(source: str | Path | TextIO | BinaryIO) -> list[str]:
    """Read prediction input, one text per line, from a path or an open stream.

    Empty lines are kept (as ``""``) so outputs stay aligned with inputs; the caller
    decides what an empty input produces.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        return _decode_lines(_read_bytes(path), str(path))
    name = getattr(source, "name", "<stream>")
    stream = getattr(source, "buffer", source)  # read stdin as bytes to name a bad line
    data = stream.read()
    if isinstance(data, str):
        data = data.encode("utf-8", errors="surrogateescape")
    return _decode_lines(data, str(name))


def read_parallel_files(src_path: str | Path, tgt_path: str | Path) -> list[tuple[str, str]]:
    """Read two line-aligned plain text files -> list of (src, tgt).

    Raises TransduceError for different line counts (naming both files and counts) or
    an empty line on either side.
    """
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise TransduceError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}; "
            "source and target files must be line-aligned"
        )
    pairs = []
    for lineno, (s, t) in enumerate(zip(src, tgt), 1):
        for text, path in ((s, src_path), (t, tgt_path)):
            if not text.strip():
                raise TransduceError(f"{path}:{lineno}: empty line; remove it from both files")
        pairs.append((s.strip(), t.strip()))
    return pairs
