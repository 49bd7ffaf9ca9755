"""Bad input, generated: every command answers with exit status 2 and one ``error:`` line
naming the key, option or file, never a traceback, and leaves a run folder as it was.

The values come from the bounds declared on the config dataclasses (one source for the
YAML loader, the CLI and the server) and from hand-picked cases of each class of issue
12: values out of range, work bounded by cost, numbers that are not numbers, empty data,
commands that would damage what exists, resume with a changed config, unseen text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import struct
import typing
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from transduce.cli import main
from transduce.config import (
    AudioConfig,
    Check,
    Config,
    DataConfig,
    DecodeConfig,
    ImageConfig,
    TokenizerConfig,
    TrainConfig,
)
from transduce.data.tokenizers import SentencePieceTokenizer

SETTINGS = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SECTIONS = {
    "train": TrainConfig,
    "decode": DecodeConfig,
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "audio": AudioConfig,
    "image": ImageConfig,
}


# ------------------------------------------------------------------ helpers


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256) and every folder ('dir')."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run the CLI in this process; returns (exit status, stderr)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


def assert_refused(argv: list[str], capsys, names: str | list[str], run: Path | None = None):
    """Exit 2, exactly one ``error:`` line that names ``names``, no traceback; ``run``
    (when given) byte-identical afterwards."""
    before = snapshot(run) if run is not None else None
    code, err = run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2, (argv, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for name in [names] if isinstance(names, str) else names:
        assert name in lines[0], (name, lines[0])
    if run is not None:
        assert snapshot(run) == before, f"{run} changed by {argv}"
    return lines[0]


@pytest.fixture(scope="module")
def run(tiny_run) -> Path:
    return tiny_run


@pytest.fixture
def run_copy(run, tmp_path) -> Path:
    """A copy of the run that a test may resume."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def config_file(run: Path, tmp_path: Path) -> Path:
    """The run's own config as a YAML file to give ``train``."""
    path = tmp_path / "cfg.yaml"
    shutil.copy(run / "config.yaml", path)
    return path


# ------------------------------------------------------------------ class 1: values in range


def _violations(check: Check, typ: type) -> st.SearchStrategy[str]:
    """Override texts that break ``check`` (as YAML reads them)."""
    special = st.sampled_from([".nan", ".inf", "-.inf", "[1, 2]", "{a: 1}"])
    if check.choices is not None:
        words = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True).filter(
            lambda w: (
                w not in check.choices
                and w not in ("yes", "no", "on", "off", "null", "y", "n", "true", "false")
            )  # fmt: skip
        )
        return st.one_of(words, st.sampled_from(["1", "''"]))
    if check.pattern is not None and check.what and "name" in check.what:
        return st.sampled_from(["../../x", "/abs/path", "a/b", "..", "''", "~/x", "x\\y"])
    if check.pattern is not None:
        return st.sampled_from(["tpu", "gpu", "cuda:x", "cuda:-1", "''", "CPU"])
    if check.length is not None or check.items is not None:
        return st.sampled_from(["[a, b]", "[.nan, 1]", "[1, 2, 3, 4, 5]", "[-1e9, 1e9]", "7"])
    options = [special]
    low = check.ge if check.ge is not None else check.gt
    high = check.le if check.le is not None else check.lt
    if typ is int:
        if low is not None:
            options.append(st.integers(max_value=int(low) - (check.ge is not None)).map(str))
        if high is not None:
            options.append(st.integers(min_value=int(high) + (check.le is not None)).map(str))
        options.append(st.sampled_from([str(2**70), "-" + str(2**70), "1.5", "abc"]))
    else:
        if low is not None:
            options.append(
                st.floats(max_value=low, exclude_max=check.ge is not None, allow_nan=False)
                .filter(lambda x: x == x and abs(x) < 1e300)
                .map(repr)
            )
        if high is not None:
            options.append(
                st.floats(min_value=high, exclude_min=check.le is not None, allow_nan=False)
                .filter(lambda x: abs(x) < 1e300)
                .map(repr)
            )
    return st.one_of(*options)


def _bad_overrides() -> st.SearchStrategy[tuple[str, str]]:
    pairs = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            check = f.metadata.get("check")
            if check is not None:
                key = f"{section}.{f.name}"
                pairs.append(st.tuples(st.just(key), _violations(check, hints[f.name])))
    name = dataclasses.fields(Config)[1]
    pairs.append(st.tuples(st.just("name"), _violations(name.metadata["check"], str)))
    return st.one_of(*pairs)


@SETTINGS
@given(bad=_bad_overrides())
def test_generated_out_of_range_config_values_are_refused(run, tmp_path, capsys, bad):
    key, text = bad
    cfg = config_file(run, tmp_path)
    argv = ["train", cfg, f"{key}={text}", "--run-dir", run, "--resume"]
    assert_refused(argv, capsys, key.split(".")[-1], run=run)


ISSUE_CASES = [
    "train.lr=-1",
    "train.lr=.nan",
    "train.lr=.inf",
    "train.accumulate=0",
    "train.valid_every=0",
    "train.label_smoothing=1.5",
    "train.threads=-1",
    "train.device=tpu",
    "train.betas=[a, b]",
    f"train.seed={2**70}",
    "train.clip_norm=-1",
    "train.max_minutes=-1",
    "image.size=0",
    "audio.speed_perturb=[0]",
    "audio.noise_snr_db=[a, b]",
    "data.max_src_len=0",
    "decode.beam=0",
    "decode.nbest=9",
    "tokenizer.character_coverage=2",
    "name=../../x",
    "name=/tmp/elsewhere",
]


@pytest.mark.parametrize("override", ISSUE_CASES)
def test_issue_config_cases(run, tmp_path, capsys, override):
    key = override.split("=")[0].split(".")[-1]
    argv = ["train", config_file(run, tmp_path), override, "--run-dir", run, "--resume"]
    assert_refused(argv, capsys, key, run=run)


def test_model_too_large_for_memory_is_refused_naming_the_keys(run, tmp_path, capsys):
    argv = ["train", config_file(run, tmp_path), "model.decoder.d_model=4000000"]
    argv += ["model.decoder.heads=1", "model.encoder.d_model=4000000", "model.encoder.heads=1"]
    argv += ["--run-dir", tmp_path / "huge"]
    assert_refused(argv, capsys, ["d_model", "vocab_size"])


PREDICT_OPTIONS = {
    "--beam": ["0", "-1", "nan", "1.5", "x", str(2**70)],
    "--nbest": ["0", "-3"],
    "--temperature": ["0", "-1", "nan", "inf"],
    "--top-p": ["0", "2", "nan"],
    "--top-k": ["-1"],
    "--repetition-penalty": ["0", "-2"],
    "--batch-size": ["0", "-5"],
    "--max-len": ["0", "-1"],
    "--min-len": ["-1"],
    "--chunk": ["0", "-1"],
    "--ctc-weight": ["2", "-0.5"],
    "--len-penalty": ["nan", "-1"],
    "--no-repeat-ngram": ["-1"],
    "--coverage-penalty": ["-1", "inf"],
    "--max-work": ["0", "-1"],
}


@SETTINGS
@given(
    option=st.sampled_from(sorted(PREDICT_OPTIONS)),
    data=st.data(),
)
def test_generated_bad_predict_options(run, capsys, monkeypatch, option, data):
    value = data.draw(
        st.one_of(st.sampled_from(PREDICT_OPTIONS[option]), st.integers(max_value=-1).map(str))
    )
    monkeypatch.setattr("sys.stdin", io.StringIO("Ein Satz.\n"))
    argv = ["predict", run / "best", f"{option}={value}"]
    assert_refused(argv, capsys, option, run=run)


def test_nbest_above_beam_is_refused_naming_both(run, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Ein Satz.\n"))
    line = assert_refused(["predict", run / "best", "--nbest", "5", "--beam", "2"], capsys, "nbest")
    assert "beam" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "tpu"])
def test_missing_device_is_refused(run, capsys, device):
    assert_refused(["predict", run / "best", "--device", device], capsys, "--device", run=run)


SERVE_OPTIONS = {
    "--port": ["-1", "70000", "0", "x"],
    "--workers": ["0", "-1"],
    "--threads": ["-1", "0"],
    "--max-inputs": ["0", "-3"],
    "--max-upload-mb": ["-1", "0", "nan", "1e-9"],  # 1e-9: under one byte (was served)
    "--max-pixels": ["0"],
    "--max-seconds": ["0", "-1", "inf"],
    "--timeout": ["0", "-1", "nan"],
    "--max-work": ["0"],
}


@pytest.mark.parametrize(
    "option,value", [(o, v) for o, values in SERVE_OPTIONS.items() for v in values]
)
def test_bad_serve_options(run, capsys, option, value):
    assert_refused(["serve", run / "best", f"{option}={value}"], capsys, option, run=run)


def test_serve_port_in_use_and_bad_host(run, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert_refused(["serve", run / "best", "--port", port], capsys, "--port", run=run)
    for host in ["no-such-host.invalid", "300.1.1.1"]:
        assert_refused(["serve", run / "best", "--host", host], capsys, "--host", run=run)


def test_evaluate_limit_must_be_positive(run, capsys):
    assert_refused(["evaluate", run / "best", "--limit", "-5"], capsys, "--limit", run=run)


# ------------------------------------------------------------------ class 2: bounded work


def test_decoding_work_is_bounded_before_decoding(run, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Ein Satz.\n" * 3))
    argv = ["predict", run / "best", "--beam", "1000", "--nbest", "1", "--max-len", "100000"]
    assert_refused(argv, capsys, "--max-work", run=run)


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG that claims ``width x height``: Pillow reads the size from its header,
    and decoding its pixels would need width x height x 3 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 64)  # the start of the first row, then nothing
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def file_models(untrained_file_models) -> dict[str, Path]:
    return untrained_file_models


def test_huge_image_refused_from_its_header(file_models, tmp_path, capsys):
    big = tmp_path / "big.png"
    big.write_bytes(png_header(12000, 12000))  # 144 megapixels in 33 bytes
    assert_refused(["predict", file_models["caption"], big], capsys, [str(big), "pixels"])


@pytest.mark.parametrize("case", ["two-hours", "one-hertz", "nan", "inf"])
def test_bad_audio_refused_naming_the_file(file_models, tmp_path, capsys, case):
    path = tmp_path / f"{case}.wav"
    if case == "two-hours":
        sf.write(path, np.zeros(1000 * 7200, dtype=np.int16), 1000)  # 2 h at 1 kHz, 14 MB
    elif case == "one-hertz":
        sf.write(path, (np.random.default_rng(0).random(8000) - 0.5).astype(np.float32), 1)
    else:
        wave = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)
        wave[100] = np.nan if case == "nan" else np.inf
        sf.write(path, wave, 16000, subtype="FLOAT")
    assert_refused(["predict", file_models["asr"], path], capsys, str(path))


# ------------------------------------------------------------------ class 3: not numbers


@pytest.mark.parametrize("damage", ["nan", "int"])
def test_damaged_weights_refused_naming_the_tensor(run, tmp_path, capsys, damage):
    model = tmp_path / "model"
    shutil.copytree(run / "best", model)
    weights = load_file(model / "model.safetensors")
    name = sorted(weights)[0]
    t = weights[name]
    weights[name] = torch.full_like(t, float("nan")) if damage == "nan" else t.to(torch.int32)
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    assert_refused(["predict", model], capsys, name)


def test_invalid_utf8_on_stdin_names_the_line(run, capsys, monkeypatch):
    data = b"Ein Satz.\ncaf\xe9\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    assert_refused(["predict", run / "best"], capsys, "<stdin>:2", run=run)


# ------------------------------------------------------------------ class 4: empty data


@pytest.mark.parametrize("split", ["train", "valid"])
def test_empty_data_file_is_refused(run, tmp_path, capsys, split):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    argv = ["train", config_file(run, tmp_path), f"data.{split}={empty}", "--run-dir"]
    assert_refused([*argv, tmp_path / "new"], capsys, [f"data.{split}", str(empty)])


def test_evaluate_on_empty_data_is_refused(run, tmp_path, capsys):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    assert_refused(["evaluate", run / "best", "--data", empty], capsys, str(empty), run=run)


def test_speech_manifest_with_empty_text_is_refused(tmp_path, capsys):
    from tests.integration.test_serving import speech_raw

    clip = tmp_path / "a.wav"
    sf.write(clip, np.random.default_rng(0).uniform(-0.5, 0.5, 8000).astype(np.float32), 16000)
    manifest = tmp_path / "train.jsonl"
    manifest.write_text(json.dumps({"audio": "a.wav", "duration": 0.5, "text": ""}) + "\n")
    raw = speech_raw()
    raw["data"] = {"train": str(manifest), "valid": str(manifest), "test": str(manifest)}
    raw["train"] = {"max_steps": 1, "early_stop_metric": "cer"}
    cfg = tmp_path / "speech.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert_refused(["train", cfg, "--run-dir", tmp_path / "r"], capsys, f"{manifest}:1")


def test_data_prepare_output_over_its_input_is_refused(tmp_path, capsys):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "keep.txt").write_text("a user's file")
    for out in (lists, tmp_path):  # is, contains the input
        argv = ["data", "prepare", "ddtp", "--lists-dir", lists, "--out", out]
        assert_refused(argv, capsys, "--out", run=lists)
    assert_refused(["data", "prepare", "ddtp", "--out", lists], capsys, "--out", run=lists)


def test_data_prepare_that_would_be_empty_writes_nothing(tmp_path, capsys, monkeypatch):
    """A source that finds nothing (e.g. apt lists without Translation files) is an error,
    and the output folder is neither created nor half-written."""
    import transduce.data.sources as sources

    def find_nothing(name: str, out: Path, options: dict) -> dict:
        (out / "train.tsv").write_text("")
        return {"name": name, "counts": {"train": 0, "valid": 0, "test": 0}}

    monkeypatch.setattr(sources, "_prepare", find_nothing)
    out = tmp_path / "data" / "ddtp-de-en"
    assert_refused(["data", "prepare", "ddtp", "--out", out], capsys, ["no examples", "ddtp"])
    assert not out.exists() and list((tmp_path / "data").iterdir()) == []


# ------------------------------------------------------------------ class 5: no damage


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "{run}/best", "--out", "{run}", "--force"],
        ["export", "{run}/best", "--out", "{run}/best", "--force"],
        ["export", "{run}/best", "--out", "{run}/tb", "--force"],
        ["average", "{run}", "--out", "{run}/train.log"],
        ["average", "{run}", "--out", "{run}"],
        ["average", "{run}", "--out", "{run}/best"],
    ],
)
def test_commands_never_write_over_their_run(run, capsys, argv):
    argv = [a.format(run=run) for a in argv]
    assert_refused(argv, capsys, "--out", run=run)


def test_resume_with_a_changed_model_lists_the_keys_and_writes_nothing(run, tmp_path, capsys):
    cfg = config_file(run, tmp_path)
    argv = ["train", cfg, "model.decoder.ff_dim=96", "train.valid_every=7", "--run-dir", run]
    keys = ["model.decoder.ff_dim", "train.valid_every"]
    line = assert_refused([*argv, "--resume"], capsys, keys, run=run)
    assert "max_steps" in line  # what a resume may change


def test_resume_from_a_truncated_checkpoint_writes_nothing(run_copy, tmp_path, capsys):
    last = run_copy / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    argv = ["train", config_file(run_copy, tmp_path), "--run-dir", run_copy, "--resume"]
    assert_refused(argv, capsys, str(last), run=run_copy)


def test_train_into_a_foreign_folder_is_refused(run, tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    argv = ["train", config_file(run, tmp_path), "--run-dir", home]
    assert_refused(argv, capsys, str(home), run=home)


def test_resume_may_raise_max_steps(run_copy, tmp_path, capsys):
    """The positive side of class 6: a limit may change on resume."""
    steps = json.loads((run_copy / "summary.json").read_text())["steps"]
    argv = ["train", config_file(run_copy, tmp_path), f"train.max_steps={steps + 2}"]
    code, err = run_cli([*argv, "train.progress=false", "--run-dir", run_copy, "--resume"], capsys)
    assert code == 0, err
    assert json.loads((run_copy / "summary.json").read_text())["steps"] == steps + 2
    assert yaml.safe_load((run_copy / "config.yaml").read_text())["train"]["max_steps"] == steps + 2


# ------------------------------------------------------------------ class 7: unseen text


def test_sentencepiece_round_trips_text_it_never_saw(data_dir):
    texts = (data_dir / "train.tsv").read_text(encoding="utf-8").replace("\t", "\n").splitlines()
    tok = SentencePieceTokenizer.train(texts[:2000], vocab_size=600)
    cases = [
        "Bibliothek 😀 für 漢字 und\u00a0NBSP",
        "zwei  Leerzeichen   und\tTab",
        "libgtk-3-dev 3.24.38+dfsg-1 python3-numpy_1.26.4",
        "Ελληνικά, русский, עברית, 1234567890",
    ]
    for text in cases:
        ids = tok.encode(text)
        assert 1 not in ids, text  # no <unk>
        assert tok.decode(ids) == text


# ------------------------------------------------------------------ second audit: new cases


def test_yaml_numbers_in_exponent_form_are_numbers(run, tmp_path, capsys):
    """``lr: 3e-3`` is a number in a config file as on the command line (PyYAML alone reads
    it as a string, and the loader then refused a value that looks like a number)."""
    from transduce.config import load_config

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("train:\n  lr: 3e-3\n  max_minutes: 1E1\n", encoding="utf-8")
    loaded = load_config(cfg)
    assert loaded.train.lr == 0.003 and loaded.train.max_minutes == 10.0
    cfg.write_text("train:\n  lr: -3e-3\n", encoding="utf-8")
    argv = ["train", cfg, "--run-dir", tmp_path / "r"]
    line = assert_refused(argv, capsys, ["train.lr", "-0.003"])
    assert "out of range" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "make,names",
    [
        (lambda d: ["train", d], "is a folder"),  # the config file
        (lambda d: ["predict", d / "f.txt"], "is a file"),  # the model folder
        (lambda d: ["average", d / "f.txt"], "is a file"),  # the run folder
    ],
)
def test_paths_of_the_wrong_kind_say_so(tmp_path, capsys, make, names):
    (tmp_path / "f.txt").write_text("a user's file")
    assert_refused(make(tmp_path), capsys, [names, str(tmp_path)], run=tmp_path)


def test_min_len_above_a_fixed_max_len_is_refused(run, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Ein Satz.\n"))
    argv = ["predict", run / "best", "--min-len", "50", "--max-len", "5"]
    line = assert_refused(argv, capsys, ["min_len", "--max-len"], run=run)
    assert "(50)" in line and "(5;" in line


@pytest.mark.parametrize("option", ["--output", "--attention-plot"])
@pytest.mark.parametrize("where", ["folder", "missing-folder"])
def test_output_file_that_cannot_be_written_is_refused_before_decoding(
    run, tmp_path, capsys, monkeypatch, option, where
):
    """Before: a traceback (IsADirectoryError, FileNotFoundError) after all the decoding."""
    target = tmp_path if where == "folder" else tmp_path / "no" / "such" / "out.txt"
    monkeypatch.setattr("sys.stdin", io.StringIO("Ein Satz.\n"))
    command = "evaluate" if option == "--output" else "predict"
    argv = [command, run / "best", option, target]
    if command == "evaluate":
        argv += ["--limit", "2"]
    want = "is a folder" if where == "folder" else "does not exist"
    assert_refused(argv, capsys, [option, want], run=run)
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("victim", ["train.log", "last.pt", "checkpoints.json", "best/config.json"])
def test_output_file_never_overwrites_a_file_of_a_run(run, capsys, monkeypatch, victim):
    """Before: ``evaluate --output RUN/last.pt`` replaced the checkpoint with hypotheses."""
    argv = ["evaluate", run / "best", "--limit", "2", "--output", run / victim]
    assert_refused(argv, capsys, ["--output", str(run / victim)], run=run)
    monkeypatch.setattr("sys.stdin", io.StringIO("Ein Satz.\n"))
    argv = ["predict", run / "last", "--attention-plot", run / victim]
    assert_refused(argv, capsys, "--attention-plot", run=run)


def test_output_file_never_overwrites_a_prepared_data_set(run, tmp_path, capsys):
    data = tmp_path / "data" / "ddtp-de-en"
    data.mkdir(parents=True)
    (data / "card.json").write_text("{}")
    shutil.copy(run / "train.log", data / "train.tsv")
    argv = ["evaluate", run / "best", "--limit", "2", "--output", data / "train.tsv"]
    assert_refused(argv, capsys, ["--output", "data set"], run=data)


def test_output_file_may_be_a_new_file_in_the_run_folder(run_copy, capsys):
    """The positive side: a new file beside the run's own is written, and written again
    by the next evaluate (it is not one of the run's own files: re-running the same
    command must work)."""
    before = snapshot(run_copy)
    out = run_copy / "test.hyp"
    for limit in (2, 3):
        args = ["evaluate", run_copy / "best", "--limit", str(limit), "--output", out]
        code, err = run_cli(args, capsys)
        assert code == 0, err
        assert len(out.read_text(encoding="utf-8").splitlines()) == limit
    assert {k: v for k, v in snapshot(run_copy).items() if k != "test.hyp"} == before
    # the run's own files at the same level stay refused
    for own in ("config.yaml", "train.log"):
        assert (run_copy / own).is_file()
        assert_refused(
            ["evaluate", run_copy / "best", "--limit", "2", "--output", run_copy / own],
            capsys,
            own,
            run=run_copy,
        )


def test_average_refuses_weights_of_another_model(run, tmp_path, capsys):
    """Before: a RuntimeError traceback from load_state_dict."""
    other = tmp_path / "other.pt"
    torch.save({"model": {"encoder.x": torch.zeros(2, 2)}}, other)
    out = tmp_path / "avg"
    line = assert_refused(["average", run, other, "--out", out], capsys, str(other), run=run)
    assert "encoder.x" in line and "do not match" in line
    assert not out.exists()


def test_average_never_replaces_a_model_folder_it_did_not_make(run, tmp_path, capsys):
    """Before: ``average RUN --out OTHER/best`` replaced another run's best model silently."""
    other = tmp_path / "other-best"
    shutil.copytree(run / "best", other)
    assert_refused(["average", run, "--out", other], capsys, ["--out", str(other)], run=other)


def test_average_may_replace_its_own_average(run_copy, tmp_path, capsys):
    """The positive side: re-averaging replaces the folder ``average`` made, at its
    default place and at an explicit --out, and writes averaged.json naming the sources."""
    for out in (run_copy / "averaged", tmp_path / "avg"):
        for _ in range(2):
            argv = ["average", run_copy] + (["--out", out] if out.parent == tmp_path else [])
            code, err = run_cli(argv, capsys)
            assert code == 0, err
        sources = json.loads((out / "averaged.json").read_text())
        assert sources["checkpoints"] and all(Path(p).is_file() for p in sources["checkpoints"])


def test_lists_dir_that_is_a_file_is_refused(tmp_path, capsys):
    """Before: a NotADirectoryError traceback from mkdir."""
    lists = tmp_path / "lists.txt"
    lists.write_text("a user's file")
    argv = ["data", "prepare", "ddtp", "--lists-dir", lists, "--out", tmp_path / "out"]
    assert_refused(argv, capsys, ["--lists-dir", str(lists)], run=tmp_path)


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["model.share_embeddings=true"], "model.share_embeddings"),
        (
            [
                "model.encoder={type: lstm, embed_dim: 32, hidden_size: 32}",
                "model.decoder={type: lstm, embed_dim: 32, hidden_size: 32, copy: true}",
                "model.share_embeddings=false",
            ],
            "model.decoder.copy",
        ),
    ],
)
def test_one_embedding_or_copying_with_two_vocabularies_is_refused(
    run, tmp_path, capsys, overrides, key
):
    """Two vocabularies of the same size passed the shape check, and one embedding (or
    the copy mechanism) then mixed up different words with the same id, silently."""
    argv = ["train", config_file(run, tmp_path), *overrides, "tokenizer.shared=false"]
    assert_refused([*argv, "--run-dir", tmp_path / "r"], capsys, [key, "tokenizer.shared"])
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text", ["[1, 2]", "null", "0", '""'])
def test_model_config_that_is_not_an_object_is_refused(run, tmp_path, capsys, text):
    """Before: a list was an AttributeError traceback; null loaded the default config and
    blamed the weights for not matching it."""
    model = tmp_path / "model"
    shutil.copytree(run / "best", model)
    (model / "config.json").write_text(text)
    assert_refused(["predict", model], capsys, str(model / "config.json"), run=model)


def test_resume_with_a_run_config_that_is_not_a_mapping_is_refused(run_copy, tmp_path, capsys):
    cfg = config_file(run_copy, tmp_path)
    (run_copy / "config.yaml").write_text("- a\n- b\n")
    argv = ["train", cfg, "--run-dir", run_copy, "--resume"]
    assert_refused(argv, capsys, ["cannot resume", "config.yaml"], run=run_copy)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "{cfg}", "--run-dir", "{out}"],
        ["export", "{run}/best", "--out", "{out}"],
        ["average", "{run}", "--out", "{out}"],
        ["data", "prepare", "ddtp", "--lists-dir", "{tmp}/lists", "--out", "{out}"],
        ["data", "binarize", "{cfg}", "--out", "{out}"],
        ["evaluate", "{run}/best", "--limit", "2", "--output", "{out}"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_output_under_a_file_is_refused(run, tmp_path, capsys, argv):
    """``--out notes.txt/x``: before, a FileExistsError or NotADirectoryError traceback
    from mkdir (after the work, for average and export)."""
    (tmp_path / "lists").mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("a user's file")
    cfg = config_file(run, tmp_path)
    fill = {"cfg": cfg, "run": run, "tmp": tmp_path, "out": notes / "x"}
    argv = [a.format(**fill) for a in argv]
    assert_refused(argv, capsys, [str(notes), "is a file"], run=run)
    assert notes.read_text() == "a user's file"


@pytest.fixture(scope="module")
def ct2_export(run, tmp_path_factory) -> Path:
    pytest.importorskip("ctranslate2")
    out = tmp_path_factory.mktemp("ct2") / "export"
    assert main(["export", str(run / "best"), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    "options,names",
    [
        (["--beam", "1000", "--max-len", "100000"], "--max-work"),  # was decoded
        (["--min-len", "9", "--max-len", "3"], "min_len"),  # was a ValueError traceback
        (["--beam", "2", "--nbest", "3"], "nbest"),  # was decoded with 2 hypotheses
        (["--attention-plot", "{tmp}/a.png"], "--attention-plot"),  # was an AttributeError
    ],
)
def test_ctranslate2_engine_checks_options_as_torch_does(
    ct2_export, tmp_path, capsys, monkeypatch, options, names
):
    monkeypatch.setattr("sys.stdin", io.StringIO("Ein Satz.\n"))
    options = [o.format(tmp=tmp_path) for o in options]
    argv = ["predict", ct2_export, "--engine", "ctranslate2", *options]
    assert_refused(argv, capsys, names, run=ct2_export)


@pytest.mark.parametrize("damage", ["model.bin", "config.json"])
def test_damaged_ctranslate2_export_is_refused_naming_it(ct2_export, tmp_path, capsys, damage):
    """Before: a RuntimeError traceback from ctranslate2.Translator."""
    copy = tmp_path / "export"
    shutil.copytree(ct2_export, copy)
    (copy / damage).write_text("junk" if damage == "model.bin" else "{}")
    argv = ["predict", copy, "--engine", "ctranslate2"]
    assert_refused(argv, capsys, [str(copy), "CTranslate2"], run=copy)


def test_ctranslate2_export_given_to_the_torch_engine_says_which_engine(ct2_export, capsys):
    line = assert_refused(["predict", ct2_export], capsys, str(ct2_export), run=ct2_export)
    assert "--engine ctranslate2" in line


def test_evaluate_output_never_overwrites_the_models_training_data(run, tmp_path, capsys):
    """``--split test --output TRAIN.tsv``: before, the model's training file (a user's,
    outside any data set) was replaced by hypotheses."""
    train_file = Path(yaml.safe_load((run / "config.yaml").read_text())["data"]["train"])
    before = train_file.read_bytes()
    argv = ["evaluate", run / "best", "--split", "test", "--limit", "2", "--output", train_file]
    assert_refused(argv, capsys, ["--output", str(train_file)], run=run)
    assert train_file.read_bytes() == before
