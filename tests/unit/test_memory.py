"""train.keep_freed_memory: glibc serves large blocks from its heap and keeps them."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transduce import memory
from transduce.config import ConfigError, config_from_dict
from transduce.training.trainer import Trainer

libc = memory._glibc()
needs_glibc = pytest.mark.skipif(libc is None, reason="glibc only")


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def mallinfo() -> MallInfo2:
    fn = libc.mallinfo2
    fn.restype = MallInfo2
    return fn()


_HEAP_CHECK = """
import ctypes, torch
from transduce import memory
from tests.unit.test_memory import mallinfo
assert memory.keep_freed_memory()
assert memory.keep_freed_memory()  # idempotent
assert memory.applied()
size = 96 * 2**20  # far above glibc's largest mmap threshold (32 MB)
before = mallinfo()
t = torch.empty(size // 4)
during = mallinfo()
assert during.hblks == before.hblks, "a new mmap'd block: the heap did not serve it"
assert during.arena >= before.arena + size - 2**20 or during.uordblks >= size
del t
after = mallinfo()
# the freed block stays in the process, ready for the next step's tensor
assert after.arena >= size, after.arena
# Steps that each take and free such a block reuse the heap's memory: it stops growing.
# (Not always from the very next block: torch asks for aligned memory, glibc finds
# room for an aligned block of that size in a freed one only once free neighbours have
# merged with it, which took up to 3 more blocks in 60 runs, each stable from step 4.)
arenas = []
for step in range(10):
    t = torch.empty(size // 4)
    del t
    arenas.append(mallinfo().arena)
assert len(set(arenas[5:])) == 1, ("the heap kept growing", arenas)
assert arenas[-1] <= after.arena + 4 * size, ("the heap grew by more than 4 blocks", arenas)
print("ok")
"""


@needs_glibc
def test_large_blocks_come_from_the_heap_and_stay():
    """In a process of its own: mallinfo2 counts every thread's allocations, and a test
    worker may have other threads allocating at the same moment (it failed once so)."""
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc older than 2.33 has no mallinfo2")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _HEAP_CHECK],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_not_glibc_changes_nothing(monkeypatch):
    monkeypatch.setattr(memory, "_applied", False)
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    assert memory.keep_freed_memory() is False
    assert memory.applied() is False


def test_config_key_is_checked():
    cfg = config_from_dict({"task": "translation", "train": {"keep_freed_memory": False}})
    assert cfg.train.keep_freed_memory is False
    with pytest.raises(ConfigError, match="keep_freed_memory"):
        config_from_dict({"task": "translation", "train": {"keep_freed_memory": "sometimes"}})


@pytest.mark.parametrize("keep", [True, False])
def test_trainer_applies_it_on_the_cpu_only_when_asked(monkeypatch, keep):
    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)
    cfg = config_from_dict(
        {
            "task": "translation",
            "train": {"keep_freed_memory": keep, "max_steps": 1, "device": "cpu"},
        }
    )
    Trainer(cfg, "unused-run-dir")  # nothing is read or written before fit()
    assert calls == ([1] if keep else [])
