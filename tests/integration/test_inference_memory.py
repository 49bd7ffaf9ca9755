"""Predictor (and transduce.load) make a CPU process reuse freed large blocks, as the
trainer does: a beam step's (batch x beam, vocabulary) tensors otherwise come back
from the kernel as fresh zeroed pages every step (transduce/memory.py)."""

from __future__ import annotations

import pytest

import transduce
from transduce import memory
from transduce.inference import Predictor


@pytest.mark.parametrize("keep", [True, False])
def test_predictor_applies_it_on_the_cpu_only_when_asked(monkeypatch, tiny_run, keep):
    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)
    predictor = Predictor.load(tiny_run / "best", keep_freed_memory=keep)
    assert calls == ([1] if keep else [])
    assert len(predictor.predict(["Dokumentation für das Paket"], beam=1)) == 1  # it decodes


def test_the_python_api_passes_it_on(monkeypatch, tiny_run):
    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(1) or True)
    transduce.load(tiny_run / "best")
    transduce.load(tiny_run / "best", keep_freed_memory=False)
    assert calls == [1]
