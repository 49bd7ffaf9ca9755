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


def test_long_manifest_clips_are_cut_like_long_files(asr_model, tmp_path):
    """``evaluate`` passes manifest entries (clips), not paths: a clip longer than
    audio.max_seconds must be cut as predict cuts a file (Whisper would otherwise read
    its first 30 seconds only)."""
    from transduce.inference import Predictor
    from transduce.tasks.speech import AudioClip

    run, _ = asr_model
    folder = resolve_data_path(f"{SAMPLE}/train.jsonl").parent
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    pause = np.zeros(8000, dtype=np.float32)
    parts = [read_audio(folder / r["audio"], 16000) for r in rows[:9:3]]
    wave = np.concatenate([x for p in parts for x in (p, pause)] * 2)
    long = tmp_path / "long.flac"
    write_audio(long, wave, 16000)
    task = Predictor.load(run / "best").task
    assert len(wave) > task.cfg.audio.max_seconds * 16000
    from_file = task.split_input(str(long))
    from_clip = task.split_input(AudioClip(str(long), len(wave) // 160))
    assert len(from_file) > 1
    assert [(c.start, len(c.wave)) for c in from_clip] == [
        (c.start, len(c.wave)) for c in from_file
    ]
    short = from_file[0]
    kept = task.split_input(short)
    assert len(kept) == 1 and kept[0] is short  # a piece stays as it is


def test_cli_predict_bad_audio_names_the_file(asr_model, tmp_path, capsys):
    run, _ = asr_model
    silent = tmp_path / "quiet.wav"
    write_audio(silent, np.zeros(16000, dtype=np.float32), 16000)
    assert main(["predict", str(run / "best"), str(silent)]) == 2
    err = capsys.readouterr().err
    assert "quiet.wav" in err and "silent" in err and len(err.strip().splitlines()) == 1


def test_ctc_word_times_follow_the_best_path(asr_model):
    """CTC greedy output's word times are its best path's frames (x4 subsampling of
    10 ms feature frames: 40 ms each), edges in silence moved onto the sound."""
    import torch

    from transduce.inference import Predictor
    from transduce.models.audio import ctc_log_probs
    from transduce.timestamps import transcribe, trim_silence

    run, _ = asr_model
    predictor = Predictor.load(run / "best")
    folder = resolve_data_path(f"{SAMPLE}/train.jsonl").parent
    row = json.loads((folder / "train.jsonl").read_text().splitlines()[0])
    clip = str(folder / row["audio"])
    (result,) = transcribe(predictor, [clip], mode="ctc_greedy")
    assert result.text == predictor.predict([clip], mode="ctc_greedy")[0]
    assert result.word_times == "CTC alignment, 40 ms frames"
    # the best path, here: runs of one non-blank label, split into words at spaces
    src, mask = predictor.task.encode_inputs([clip])
    with torch.inference_mode():
        enc = predictor.model.encode(src, mask)
        path = ctc_log_probs(predictor.model, enc)[0].argmax(-1).tolist()
    words, current = [], None
    for t, label in enumerate(path):
        char = predictor.task.tok.decode([label]) if label else ""
        if label and (t == 0 or label != path[t - 1]):  # a label is emitted at frame t
            if char.strip() and current is None:
                current = [char, t, t]
                words.append(current)
            elif char.strip():
                current[0] += char
                current[2] = t
            else:
                current = None  # a space ends the word
        elif label and current is not None and char.strip():
            current[2] = t  # the label held on
    expected = trim_silence(
        [(w, a * 0.04, (b + 1) * 0.04) for w, a, b in words], read_audio(clip, 16000), 16000
    )
    found = [(w.word, w.start, w.end) for s in result.segments for w in s.words]
    assert len(found) == len(expected) >= 3
    for (w, a, b), (w2, a2, b2) in zip(found, expected):
        assert w == w2 and a == pytest.approx(a2) and b == pytest.approx(b2)


def test_cli_predict_subtitles_and_refusals(asr_model, tmp_path, capsys):
    from tests.integration.tiny_models import translation_raw, untrained_model_dir

    run, _ = asr_model
    folder = resolve_data_path(f"{SAMPLE}/train.jsonl").parent
    row = json.loads((folder / "train.jsonl").read_text().splitlines()[0])
    clip = str(folder / row["audio"])
    assert (
        main(["predict", str(run / "best"), clip, "--format", "vtt", "--mode", "ctc_greedy"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["WEBVTT", ""]
    start, arrow, end = lines[2].split()
    assert arrow == "-->" and "00:00:00.000" <= start < end <= f"00:00:0{row['duration']:.3f}"
    assert lines[3].strip()
    # refused, each with one error line: several files as one subtitle file, a missing
    # file, nbest, and times from a model that does not read audio
    text_model = untrained_model_dir(translation_raw(), tmp_path / "mt")
    for argv, words in [
        ([str(run / "best"), clip, clip, "--format", "srt"], "exactly one audio file"),
        ([str(run / "best"), str(tmp_path / "nope.wav"), "--format", "json"], "nope.wav"),
        ([str(run / "best"), clip, "--format", "json", "--nbest", "2"], "--nbest"),
        ([str(text_model), str(tmp_path / "x.txt"), "--format", "srt"], "speech recognition"),
    ]:
        assert main(["predict", *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and err.startswith("error:") and len(err.strip().splitlines()) == 1
