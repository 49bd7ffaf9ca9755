"""Audio reading, resampling, downmixing, silence splitting, errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from transduce.config import TransduceError
from transduce.data.audio import (
    read_audio,
    resample,
    speed_perturb,
    split_at_silences,
    telephone,
    write_audio,
)


def tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.argmax(spectrum) * rate / len(wave))


@pytest.mark.parametrize("rate_in", [8000, 22050, 44100])
def test_resampling_keeps_frequency_and_duration(rate_in):
    out = resample(tone(440, 1.0, rate_in), rate_in, 16000)
    assert abs(len(out) - 16000) <= 1
    assert abs(peak_hz(out, 16000) - 440) < 2


def test_stereo_is_downmixed_and_any_format_is_read(tmp_path):
    left, right = tone(300, 0.5, 22050), tone(1000, 0.5, 22050)
    stereo = np.stack([left, right], axis=1)
    for suffix in ("wav", "flac", "ogg"):
        path = tmp_path / f"x.{suffix}"
        sf.write(str(path), stereo, 22050)
        wave = read_audio(path, 16000)
        assert wave.ndim == 1 and abs(len(wave) - 8000) <= 1
        expected = resample((left + right) / 2, 22050, 16000)
        if suffix != "ogg":  # lossless: the mean of the channels, resampled
            np.testing.assert_allclose(wave, expected, atol=1e-3)


def test_bad_audio_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(TransduceError, match="missing.wav.*does not exist"):
        read_audio(missing)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio")
    with pytest.raises(TransduceError, match="cannot read audio file .*junk.wav"):
        read_audio(junk)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(TransduceError, match="empty.wav is empty"):
        read_audio(empty)
    silent = tmp_path / "silent.flac"
    write_audio(silent, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(TransduceError, match="silent.flac is silent"):
        read_audio(silent)
    short = tmp_path / "short.wav"
    write_audio(short, tone(440, 0.05, 16000), 16000)
    with pytest.raises(TransduceError, match="short.wav is too short"):
        read_audio(short)


def test_split_at_silences_cuts_in_the_pauses():
    rate = 16000
    rng = np.random.default_rng(0)
    parts, bounds, pos = [], [], 0
    for seconds in (3.0, 4.0, 2.5, 5.0, 3.5):  # speech-like bursts with 0.5 s pauses
        burst = (0.3 * rng.standard_normal(int(seconds * rate))).astype(np.float32)
        pause = np.zeros(rate // 2, dtype=np.float32)
        parts += [burst, pause]
        pos += len(burst)
        bounds.append((pos, pos + len(pause)))
        pos += len(pause)
    wave = np.concatenate(parts)
    pieces = split_at_silences(wave, rate, max_seconds=6.0)
    assert pieces[0][0] == 0 and pieces[-1][1] == len(wave)
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))  # contiguous, in order
    assert all(end - start <= 6 * rate for start, end in pieces)
    for _, cut in pieces[:-1]:  # every cut lies inside a pause
        assert any(lo <= cut <= hi for lo, hi in bounds), cut


def test_split_handles_ten_minutes_quickly():
    rate = 16000
    wave = np.tile(np.concatenate([tone(200, 2.0, rate), np.zeros(rate // 4, np.float32)]), 267)
    assert len(wave) / rate > 600
    pieces = split_at_silences(wave, rate, max_seconds=20.0)
    assert len(pieces) >= 30 and all(e - s <= 20 * rate for s, e in pieces)


def test_augmentations():
    wave = tone(1000, 1.0, 16000)
    fast = speed_perturb(wave, 1.1)
    assert abs(len(fast) - 16000 / 1.1) <= 2
    assert abs(peak_hz(fast, 16000) - 1100) < 5  # speed perturbation also raises pitch
    high = tone(6000, 1.0, 16000)
    assert np.abs(telephone(high, 16000)[1000:-1000]).max() < 0.02  # nothing above 4 kHz
    assert np.abs(telephone(wave, 16000)).max() > 0.4


def test_prepare_names_the_missing_apt_package(monkeypatch, tmp_path):
    from transduce.data.sources import asterisk, speech_tts

    monkeypatch.setattr(speech_tts.shutil, "which", lambda name: None)
    with pytest.raises(TransduceError, match="apt-get install espeak-ng"):
        speech_tts.prepare_speech_tts(tmp_path / "out")
    with pytest.raises(TransduceError, match="asterisk-core-sounds-en-wav"):
        asterisk.prepare_asterisk(tmp_path / "out", sounds_dir=tmp_path / "none")


def test_committed_samples_are_readable_manifests():
    from transduce.tasks.speech import read_manifest

    for spec, n in (("sample:speech-tts/train.jsonl", 24), ("sample:asterisk/test.jsonl", 39)):
        items = read_manifest(spec)
        assert len(items) == n
        path, duration, text = items[0]
        assert text and abs(len(read_audio(path, 16000)) / 16000 - duration) < 0.01


def test_asterisk_transcripts_are_cleaned_to_what_is_spoken(tmp_path):
    import gzip

    from transduce.data.sources.asterisk import read_transcripts, spoken_text

    assert spoken_text("(10 seconds of silence)") == ""
    assert spoken_text("<beep ascending>") == ""
    assert spoken_text("[a ringing telephone]") == ""
    assert spoken_text("at [@]") == "at"
    assert spoken_text('IAX (note: does not say "2")') == "IAX"
    assert spoken_text("press * to toggle pause, press # to exit") == (
        "press star to toggle pause, press pound to exit"
    )
    path = tmp_path / "core-sounds-en.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("; comment\nsilence/1: (1 second of silence)\ndot: dot [.]\nhello: Hello.\n")
    assert read_transcripts(path) == [("dot", "dot"), ("hello", "Hello.")]
