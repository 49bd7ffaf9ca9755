"""The validation layer: declared bounds, output paths, decoding cost, resume config diffs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from transduce.checks import Check, ConfigError, arg_type, field_arg_type
from transduce.config import DecodeConfig, TrainConfig, config_from_dict
from transduce.inference import decode_work
from transduce.paths import check_output, replace_folder
from transduce.training.run_dir import RESUME_MAY_CHANGE, check_resume_config


def test_check_describes_and_finds_problems():
    c = Check(gt=0, le=10)
    assert c.describe() == "a finite number > 0 and <= 10"
    assert c.problem(0) == "is out of range" and c.problem(10) is None
    assert c.problem(float("nan")) == "is not a finite number"
    assert c.problem(2**70) == "does not fit in a 64-bit integer"
    assert c.problem(True) == "is not a number"
    pair = Check(length=2, items=Check(ge=0, lt=1))
    assert pair.problem([0.5, 0.9]) is None
    assert pair.problem([0.5]) == "has 1 items"
    assert pair.problem(["a", 0.1]) == "item 0 ('a') is not a number"
    weights = Check(items=Check(ge=0))
    assert weights.problem({"coverage": -1}) == "entry 'coverage' (-1) is out of range"
    assert Check(choices=("a", "b")).describe() == "one of a, b"


CONFIG_MESSAGES = [
    ({"train": {"lr": -1}}, "config.train.lr: -1.0 is out of range; expected a finite number > 0"),
    ({"train": {"betas": ["a", "b"]}}, "config.train.betas: ['a', 'b'] item 0 ('a') is not a"),
    ({"train": {"device": "tpu"}}, "config.train.device: 'tpu' is not allowed; expected auto"),
    ({"decode": {"beam": 2, "nbest": 3}}, "config.decode.nbest (3) must not exceed config.decode"),
    ({"audio": {"noise_snr_db": [30, 10]}}, "config.audio.noise_snr_db: [30, 10] must be [low"),
    ({"name": "../x"}, "config.name: '../x' is not allowed; expected a name, not a path"),
]


@pytest.mark.parametrize("section,message", CONFIG_MESSAGES)
def test_config_messages_name_the_key_and_the_range(section, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict(section)
    assert message in str(e.value)


def test_sampling_may_ask_more_samples_than_the_beam():
    assert config_from_dict({"decode": {"beam": 1, "nbest": 4, "sampling": True}}).decode.nbest == 4


def test_argparse_types_share_the_bounds():
    beam = field_arg_type(DecodeConfig, "beam")
    assert beam("3") == 3
    for bad in ("0", "x", "1.5", "1025"):
        with pytest.raises(argparse.ArgumentTypeError):
            beam(bad)
    lr = field_arg_type(TrainConfig, "lr")
    with pytest.raises(argparse.ArgumentTypeError, match="not a finite number"):
        lr("nan")
    assert arg_type(int, Check(ge=1))("7") == 7


def test_decode_work_counts_beam_times_max_length():
    d = DecodeConfig(beam=4, max_len_a=1.5, max_len_b=10, min_len=1)
    assert decode_work([10, 20], d) == 4 * (25 + 40)
    assert decode_work([10], DecodeConfig(beam=4, max_len_a=0, max_len_b=5, min_len=50)) == 200
    sampling = DecodeConfig(beam=9, nbest=3, sampling=True, max_len_a=0, max_len_b=7)
    assert decode_work([1], sampling) == 21


def test_check_output_refuses_is_contains_and_inside(tmp_path):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    for out, word in [(run / "best", "is"), (run, "contains"), (run / "best" / "x", "lies inside")]:
        with pytest.raises(Exception, match=word):
            check_output(out, [run / "best"])
    assert check_output(tmp_path / "other", [run / "best"]) == (tmp_path / "other").resolve()
    check_output(run / "best" / "x", [run / "best"], inside_ok=True)


def test_replace_folder_keeps_the_old_until_the_new_is_complete(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine").write_text("old")

    def fail(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        replace_folder(out, fail, force=True, is_own=lambda p: True, kind="thing")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "mine").read_text() == "old"
    with pytest.raises(Exception, match="not a thing"):
        replace_folder(out, fail, force=True, is_own=lambda p: False, kind="thing")
    with pytest.raises(Exception, match="--force"):
        replace_folder(out, fail, force=False, is_own=lambda p: True, kind="thing")
    replace_folder(
        out, lambda t: (t / "new").write_text("n"), force=True, is_own=lambda p: True, kind="x"
    )
    assert [p.name for p in out.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_resume_config_diff_lists_keys_and_allows_limits(tmp_path):
    cfg = config_from_dict({"train": {"max_steps": 10}})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    check_resume_config(tmp_path, config_from_dict({"train": {"max_steps": 99}}))
    assert "train.max_steps" in RESUME_MAY_CHANGE
    changed = config_from_dict({"train": {"max_steps": 10, "lr": 0.1}, "decode": {"beam": 2}})
    with pytest.raises(Exception) as e:
        check_resume_config(tmp_path, changed)
    assert "train.lr: 0.0005 -> 0.1" in str(e.value) and "decode.beam: 5 -> 2" in str(e.value)
