"""Asterisk core sounds: 551 spoken recordings by one professional speaker (TEST ONLY).

``apt-get install asterisk-core-sounds-en asterisk-core-sounds-en-wav`` installs the
8 kHz telephone prompts in ``/usr/share/asterisk/sounds/en_US_f_Allison/`` and
their transcripts in ``/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz``
(lines ``name: text``; ``;`` lines are comments). Transcripts are cleaned to what
is spoken (:func:`spoken_text`): texts that only describe a sound (``[...]``,
``(10 seconds of silence)``, ``<beep ascending>``) are skipped, notes such as
``(note: does not say "2")`` and glyph hints such as ``at [@]`` are removed, and
the keypad symbols ``*`` and ``#`` become "star" and "pound", as the prompts say
them. ``transduce data prepare asterisk`` writes ``test.jsonl`` pointing at the
installed WAVs, and ``card.json``. It is never used for training: it measures how
synthetic-speech training transfers to a real human voice over a telephone band.
"""

from __future__ import annotations

import datetime
import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path

import soundfile as sf

from transduce.config import TransduceError
from transduce.data.sources.ddtp import write_atomic

SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
LICENCE = "Asterisk core sound prompts (voice: Allison Smith), CC-BY-SA 3.0, Digium/Sangoma"


_NON_SPEECH = re.compile(r"^\s*(\[.*\]|\(.*\)|<.*>)\s*$")
_NOTES = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_KEYS = {"*": " star ", "#": " pound "}


def spoken_text(text: str) -> str:
    """What the speaker says in a prompt; ``""`` for a description of a non-speech sound."""
    if _NON_SPEECH.match(text):
        return ""
    text = _NOTES.sub(" ", text)
    for symbol, word in _KEYS.items():
        text = text.replace(symbol, word)
    return " ".join(text.split())


def read_transcripts(path: Path = TRANSCRIPTS) -> list[tuple[str, str]]:
    """``[(name, text)]`` of the spoken prompts, in file order."""
    if not path.is_file():
        raise TransduceError(
            f"{path} not found: install it with `apt-get install asterisk-core-sounds-en`"
        )
    out = []
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            text = spoken_text(text.strip())
            if text:
                out.append((name.strip(), text))
    return out


def prepare_asterisk(
    out_dir: Path,
    sounds_dir: Path = SOUNDS_DIR,
    transcripts: Path = TRANSCRIPTS,
    log: Callable[[str], None] = print,
) -> dict:
    """Write ``out_dir/test.jsonl`` (absolute audio paths) and ``card.json``."""
    if not sounds_dir.is_dir():
        raise TransduceError(
            f"{sounds_dir} not found: install the recordings with "
            "`apt-get install asterisk-core-sounds-en-wav`"
        )
    out_dir = Path(out_dir)
    (out_dir / "card.json").unlink(missing_ok=True)
    rows, missing, seconds = [], 0, 0.0
    for name, text in read_transcripts(transcripts):
        wav = sounds_dir / f"{name}.wav"
        if not wav.is_file():
            missing += 1
            continue
        info = sf.info(str(wav))
        duration = round(info.frames / info.samplerate, 3)
        seconds += duration
        rows.append({"audio": str(wav), "duration": duration, "text": text})
    if not rows:
        raise TransduceError(f"no transcribed recordings found in {sounds_dir}")
    write_atomic(out_dir / "test.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    card = {
        "name": "asterisk",
        "source": f"asterisk-core-sounds-en(-wav): {sounds_dir}, transcripts {transcripts}",
        "format": "JSONL manifest {audio, duration, text}; 8 kHz mono 16-bit WAV",
        "use": "test only (real human speech); never train on it",
        "counts": {"test": len(rows), "transcripts_without_audio": missing},
        "minutes": round(seconds / 60, 1),
        "licence": LICENCE,
        "prepared": datetime.date.today().isoformat(),
    }
    write_atomic(out_dir / "card.json", json.dumps(card, indent=2) + "\n")
    log(f"asterisk: {len(rows)} recordings, {seconds / 60:.1f} minutes -> {out_dir}")
    return card


__all__ = ["prepare_asterisk", "read_transcripts", "spoken_text"]


SAMPLE_DIR = Path(__file__).resolve().parent.parent / "samples" / "asterisk"


def make_sample(out_dir: Path = SAMPLE_DIR, n: int = 40, seed: int = 1) -> int:
    """Copy ``n`` seeded recordings of at most 4 s as 8 kHz FLAC plus ``test.jsonl``."""
    import random

    from transduce.data.audio import read_audio, write_audio

    items = [(name, text) for name, text in read_transcripts()]
    items = [(a, t) for a, t in items if (SOUNDS_DIR / f"{a}.wav").is_file()]
    random.Random(seed).shuffle(items)
    rows = []
    for name, text in items:
        wave = read_audio(SOUNDS_DIR / f"{name}.wav", 8000)
        if len(wave) > 4 * 8000:
            continue
        rel = f"audio/{name.replace('/', '_')}.flac"
        write_audio(Path(out_dir) / rel, wave, 8000)
        rows.append({"audio": rel, "duration": round(len(wave) / 8000, 3), "text": text})
        if len(rows) == n:
            break
    write_atomic(Path(out_dir) / "test.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return len(rows)
