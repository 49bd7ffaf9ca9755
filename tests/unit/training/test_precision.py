"""train.precision: auto picks bf16 only where the device multiplies bf16 natively."""

from __future__ import annotations

import builtins
import io

import pytest
import torch

from transduce.config import ConfigError, config_from_dict
from transduce.training import trainer as trainer_mod
from transduce.training.trainer import Trainer, native_bf16, resolve_precision

CPU = torch.device("cpu")


def fake_cpuinfo(monkeypatch, text: str | None) -> None:
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        if str(path) == "/proc/cpuinfo":
            if text is None:
                raise FileNotFoundError(path)
            return io.StringIO(text)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)


@pytest.mark.parametrize(
    "text, native",
    [
        ("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n", True),
        ("flags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n", True),
        ("flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n", False),  # VNNI is not bf16
        ("Features\t: fp asimd sve bf16 i8mm\n", True),  # Arm
        ("Features\t: fp asimd sve i8mm\n", False),
        (None, False),  # no /proc (macOS, Windows)
    ],
)
def test_native_bf16_reads_the_cpu_flags(monkeypatch, text, native):
    fake_cpuinfo(monkeypatch, text)
    assert native_bf16(CPU) is native
    assert resolve_precision("auto", CPU) == ("bf16" if native else "fp32")


def test_explicit_precisions_are_kept(monkeypatch):
    fake_cpuinfo(monkeypatch, "flags : avx2\n")
    for p in ("fp32", "bf16", "fp16"):
        assert resolve_precision(p, CPU) == p


def test_config_accepts_auto_and_rejects_others():
    assert config_from_dict({"task": "translation", "train": {"precision": "auto"}})
    with pytest.raises(ConfigError, match="precision"):
        config_from_dict({"task": "translation", "train": {"precision": "int8"}})


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_trainer_resolves_auto(monkeypatch, native, expected):
    monkeypatch.setattr(trainer_mod, "native_bf16", lambda device: native)
    cfg = config_from_dict(
        {"task": "translation", "train": {"precision": "auto", "max_steps": 1, "device": "cpu"}}
    )
    assert Trainer(cfg, "unused-run-dir").precision == expected


def test_fp16_on_the_cpu_is_refused_before_anything_runs():
    cfg = config_from_dict(
        {"task": "translation", "train": {"precision": "fp16", "max_steps": 1, "device": "cpu"}}
    )
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Trainer(cfg, "unused-run-dir")
