"""A tiny recognizer trained for ~20 s on the committed speech sample; CLI predict/evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transduce.cli import main
from transduce.config import config_from_dict
from transduce.data.audio import read_audio, write_audio
from transduce.data.readers import resolve_data_path

SAMPLE = "sample:speech-tts"


def speech_config(**train) -> object:
    raw = {
        "task": "speech",
        "name": "tiny-asr",
        "data": {
            "train": f"{SAMPLE}/train.jsonl",
            "valid": f"{SAMPLE}/valid.jsonl",
            "test": f"{SAMPLE}/test.jsonl",
        },
        "tokenizer": {"type": "char"},
        "audio": {"max_seconds": 6.0},
        "model": {
            "encoder": {
                "type": "conformer", "d_model": 64, "heads": 4, "ff_dim": 128, "layers": 2,
                "subsampling_channels": 32, "dropout": 0.0,
                "specaug_time_masks": 0, "specaug_freq_masks": 0,
            },
            "decoder": {
                "type": "transformer", "d_model": 64, "heads": 4, "ff_dim": 128, "layers": 1,
                "dropout": 0.0,
            },
        },
        "train": {
            "batch_tokens": 2500, "lr": 3e-3, "warmup_steps": 20, "max_steps": 280,
            "valid_every": 140, "label_smoothing": 0.0, "progress": False,
            "aux_losses": {"ctc": 1.0}, "early_stop_metric": "cer", "threads": 1,
            **train,
        },
        "decode": {"beam": 4, "max_len_a": 0.5, "max_len_b": 5, "mode": "joint"},
    }  # fmt: skip
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def asr_model(tmp_path_factory):
    from transduce.training.trainer import Trainer

    run = tmp_path_factory.mktemp("asr") / "run"
    summary = Trainer(speech_config(), run).fit()
    return run, summary


def test_recognizer_learns(asr_model):
    run, summary = asr_model
    history = summary["history"]
    unigram = 2.97  # nats: the entropy of the sample's characters (no audio needed for that)
    assert history[-1]["loss"] < 0.2 * unigram  # measured 0.29
    # valid: sentences of train read by voices train never heard; 100 = empty output
    assert history[-1]["cer"] < 65, history  # measured 48.7 (joint decoding)


def test_cli_evaluate_prints_wer_and_cer(asr_model, capsys):
    run, _ = asr_model
    assert main(["evaluate", str(run / "best"), "--split", "train", "--mode", "ctc_greedy"]) == 0
    out = capsys.readouterr().out
    assert "WER" in out and "CER" in out
    cer = float(next(line.split()[1] for line in out.splitlines() if line.startswith("CER")))
    assert cer < 20  # the training clips are learnt
    for mode in ("attention", "joint"):
        assert main(["evaluate", str(run / "best"), "--split", "test", "--mode", mode]) == 0
        assert "CER" in capsys.readouterr().out


def test_cli_predict_any_rate_format_and_long_audio(asr_model, tmp_path, capsys):
    run, _ = asr_model
    folder = resolve_data_path(f"{SAMPLE}/train.jsonl").parent
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    wave = read_audio(folder / rows[0]["audio"], 16000)
    stereo_8k = tmp_path / "a.wav"  # another rate, two channels, WAV
    from transduce.data.audio import resample

    low = resample(wave, 16000, 8000)
    import soundfile as sf

    sf.write(str(stereo_8k), np.stack([low, low], axis=1), 8000)
    # a recording longer than audio.max_seconds: clips joined by pauses, split at them
    pause = np.zeros(8000, dtype=np.float32)
    parts = [read_audio(folder / r["audio"], 16000) for r in rows[:9:3]]
    long = tmp_path / "long.flac"
    write_audio(long, np.concatenate([x for p in parts for x in (p, pause)] * 2), 16000)
    assert main(["predict", str(run / "best"), str(stereo_8k), str(long)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].strip()
    assert len(lines[1].split()) > len(lines[0].split())  # several pieces transcribed


def test_cli_predict_bad_audio_names_the_file(asr_model, tmp_path, capsys):
    run, _ = asr_model
    silent = tmp_path / "quiet.wav"
    write_audio(silent, np.zeros(16000, dtype=np.float32), 16000)
    assert main(["predict", str(run / "best"), str(silent)]) == 2
    err = capsys.readouterr().err
    assert "quiet.wav" in err and "silent" in err and len(err.strip().splitlines()) == 1
