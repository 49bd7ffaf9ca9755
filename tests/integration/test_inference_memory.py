"""Reusing freed memory at inference (transduce/memory.py): a beam step's (batch x beam,
vocabulary) tensors otherwise come back from the kernel as fresh zeroed pages every step.
It is process-wide and one-way, so only a process that does nothing but decode turns it on:
`transduce predict` and `evaluate` run from the command line; Predictor and
transduce.load when asked."""

from __future__ import annotations

import sys

import pytest

import transduce
from transduce import memory
from transduce.cli import main
from transduce.inference import Predictor


@pytest.fixture
def calls(monkeypatch) -> list:
    made: list = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: made.append(1) or True)
    return made


@pytest.mark.parametrize("keep", [True, False])
def test_predictor_applies_it_on_the_cpu_only_when_asked(calls, tiny_run, keep):
    predictor = Predictor.load(tiny_run / "best", keep_freed_memory=keep)
    assert calls == ([1] if keep else [])
    assert len(predictor.predict(["Dokumentation für das Paket"], beam=1)) == 1  # it decodes


def test_the_python_api_leaves_it_off_unless_asked(calls, tiny_run):
    transduce.load(tiny_run / "best")
    assert calls == []
    transduce.load(tiny_run / "best", keep_freed_memory=True)
    assert calls == [1]


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_the_command_line_turns_it_on_but_not_a_call_of_main(
    calls, tiny_run, monkeypatch, tmp_path, capsys, command
):
    args = [command, str(tiny_run / "best")]
    if command == "predict":
        (tmp_path / "in.txt").write_text("Dokumentation\n", encoding="utf-8")
        args.append(str(tmp_path / "in.txt"))
    else:
        args += ["--split", "valid", "--limit", "5"]
    args += ["--beam", "1"]
    assert main(args) == 0  # a caller's process: left alone
    assert calls == []
    monkeypatch.setattr(sys, "argv", ["transduce", *args])
    assert main() == 0  # `transduce predict ...` from a shell
    assert calls == [1]
    capsys.readouterr()
