"""Token ids on disk, read through memory maps: corpora larger than memory.

A binarized split is four files in one folder::

    {split}.src.bin  int32, every example's source ids one after another
    {split}.src.idx  int64, n + 1 offsets into .bin: example i is bin[idx[i]:idx[i+1]]
    {split}.tgt.bin / {split}.tgt.idx   the same for the targets

:class:`ShardWriter` appends examples in chunks (memory bounded by one chunk) and
renames the files into place only when the split is complete, so a crash never
leaves a half-written split that looks whole. :class:`BinarizedExamples` is a
read-only sequence of :class:`~transduce.tasks.base.Example`-like items backed by
``numpy.memmap``: the operating system pages token ids in as batches need them,
and only the offsets (16 bytes an example) are read whole, for length bucketing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transduce.config import TransduceError

ID_DTYPE = np.int32
OFFSET_DTYPE = np.int64
SIDES = ("src", "tgt")


def split_files(directory: Path, split: str) -> dict[str, Path]:
    """``{'src.bin': path, 'src.idx': path, 'tgt.bin': ..., 'tgt.idx': ...}``."""
    return {
        f"{side}.{kind}": Path(directory) / f"{split}.{side}.{kind}"
        for side in SIDES
        for kind in ("bin", "idx")
    }


class ShardWriter:
    """Append token-id pairs to a split's files; :meth:`close` makes them visible.

    Use as a context manager: on an exception the partial files are removed and
    nothing of the split is left behind.
    """

    def __init__(self, directory: str | Path, split: str) -> None:
        self.files = split_files(Path(directory), split)
        self._tmp = {k: p.with_name(p.name + ".part") for k, p in self.files.items()}
        self._bins = {side: open(self._tmp[f"{side}.bin"], "wb") for side in SIDES}
        self._offsets = {side: [0] for side in SIDES}
        self.count = 0

    def add(self, src: list[int], tgt: list[int]) -> None:
        for side, ids in (("src", src), ("tgt", tgt)):
            arr = np.asarray(ids, dtype=np.int64)
            if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(ID_DTYPE).max):
                raise TransduceError(f"token id out of int32 range in example {self.count}")
            self._bins[side].write(arr.astype(ID_DTYPE).tobytes())
            self._offsets[side].append(self._offsets[side][-1] + arr.size)
        self.count += 1

    def close(self) -> int:
        """Finish the split: write the offsets, rename everything into place."""
        for side in SIDES:
            self._bins[side].close()
            np.asarray(self._offsets[side], dtype=OFFSET_DTYPE).tofile(self._tmp[f"{side}.idx"])
        for key, tmp in self._tmp.items():
            os.replace(tmp, self.files[key])
        return self.count

    def abort(self) -> None:
        for f in self._bins.values():
            f.close()
        for tmp in self._tmp.values():
            tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


@dataclass
class StoredExample:
    """One binarized example; the fields training reads (see ``tasks.base.Example``)."""

    src: np.ndarray  # (S,) int32 source ids
    tgt: list[int]
    ref: str = ""
    src_text: str = ""

    @property
    def src_len(self) -> int:
        return len(self.src)


class BinarizedExamples:
    """A read-only sequence over a binarized split, backed by memory maps.

    ``src_lens`` / ``tgt_lens`` are numpy arrays of every example's length, for
    :func:`~transduce.data.batching.token_batches` without touching the ids.
    """

    def __init__(self, directory: str | Path, split: str) -> None:
        files = split_files(Path(directory), split)
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise TransduceError(
                f"binarized split '{split}' is incomplete: missing {', '.join(missing)}; "
                "run `transduce data binarize CONFIG` again"
            )
        self._idx, self._bin = {}, {}
        for side in SIDES:
            idx = np.fromfile(files[f"{side}.idx"], dtype=OFFSET_DTYPE)
            size = files[f"{side}.bin"].stat().st_size // np.dtype(ID_DTYPE).itemsize
            if len(idx) == 0 or idx[0] != 0 or idx[-1] != size or np.any(np.diff(idx) < 0):
                raise TransduceError(
                    f"{files[f'{side}.idx']} does not match {files[f'{side}.bin']} "
                    "(truncated or corrupt); run `transduce data binarize CONFIG` again"
                )
            self._idx[side] = idx
            # an empty memmap is not allowed; an empty side holds no ids to read anyway
            self._bin[side] = (
                np.memmap(files[f"{side}.bin"], dtype=ID_DTYPE, mode="r")
                if size
                else np.zeros(0, dtype=ID_DTYPE)
            )
        if len(self._idx["src"]) != len(self._idx["tgt"]):
            raise TransduceError(
                f"binarized split '{split}' in {directory}: source and target counts differ"
            )
        self.src_lens = np.diff(self._idx["src"])
        self.tgt_lens = np.diff(self._idx["tgt"])

    def __len__(self) -> int:
        return len(self.src_lens)

    def _ids(self, side: str, i: int) -> np.ndarray:
        idx = self._idx[side]
        return self._bin[side][idx[i] : idx[i + 1]]

    def __getitem__(self, i: int) -> StoredExample:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        src = np.array(self._ids("src", i), dtype=np.int64)  # a copy: the map stays read-only
        return StoredExample(src=src, tgt=self._ids("tgt", i).tolist())


def example_lengths(examples) -> tuple[np.ndarray, np.ndarray]:
    """(source lengths, target lengths + 1 for eos) of in-memory or binarized examples."""
    if isinstance(examples, BinarizedExamples):
        return examples.src_lens, examples.tgt_lens + 1
    return (
        np.fromiter((e.src_len for e in examples), dtype=np.int64, count=len(examples)),
        np.fromiter((len(e.tgt) + 1 for e in examples), dtype=np.int64, count=len(examples)),
    )


__all__ = ["BinarizedExamples", "ShardWriter", "StoredExample", "example_lengths", "split_files"]
