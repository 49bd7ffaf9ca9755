"""Synthetic speech: espeak-ng and flite read real English sentences (DDTP).

``transduce data prepare speech-tts`` synthesizes the English side of the DDTP
sample (``transduce/data/samples/ddtp-de-en``: Debian package synopses, at most 20
words) with many voices: espeak-ng accents x variants (male, female, klatt) at
random speeds and pitches, and flite's voices. Splits keep DDTP's sentence splits
(so test sentences are never trained on) and the test split uses only voices and
variants that train and valid never use::

    train/valid: espeak-ng en-us, en-gb, en-gb-x-rp, en-gb-x-gbclan, en-029
                 x variants m1 m2 m3 m5 m6 f1 f2 f3 klatt klatt2; flite slt, kal, rms
    test:        espeak-ng en-gb-scotland, en-us-nyc, en-gb-x-gbcwmd
                 x variants m4 m7 f4 f5 klatt3; flite awb

Audio is stored as 16 kHz mono FLAC; manifests are JSONL (audio, duration, text,
voice) written atomically, ``card.json`` last.
"""

from __future__ import annotations

import datetime
import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from transduce.config import TransduceError
from transduce.data.audio import read_audio, write_audio
from transduce.data.readers import read_parallel_tsv, resolve_data_path
from transduce.data.sources.ddtp import write_atomic
from transduce.data.text_norm import normalize_text

SAMPLE_RATE = 16000
MAX_WORDS = 20
ESPEAK_TRAIN = ["en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-029"]
ESPEAK_TEST = ["en-gb-scotland", "en-us-nyc", "en-gb-x-gbcwmd"]
VARIANTS_TRAIN = ["m1", "m2", "m3", "m5", "m6", "f1", "f2", "f3", "klatt", "klatt2"]
VARIANTS_TEST = ["m4", "m7", "f4", "f5", "klatt3"]
FLITE_TRAIN = ["slt", "kal", "rms"]
FLITE_TEST = ["awb"]
DEFAULT_COUNTS = {"train": 6000, "valid": 200, "test": 300}
LICENCE = (
    "Audio synthesized by transduce with espeak-ng (GPL-3.0-or-later; its output is not "
    "covered by the GPL) and flite (BSD-style licence, Carnegie Mellon University and the "
    "University of Edinburgh). The sentences are English Debian package descriptions from "
    "the DDTP sample (see transduce/data/samples/ddtp-de-en/README.md: each text is under "
    "the licence of the package it describes)."
)


def check_tools() -> None:
    for tool, package in (("espeak-ng", "espeak-ng"), ("flite", "flite")):
        if shutil.which(tool) is None:
            raise TransduceError(
                f"'{tool}' is not installed: install it with `apt-get install {package}`"
            )


def sentences(split: str, max_words: int = MAX_WORDS) -> list[str]:
    """English sentences of a DDTP sample split: 2..max_words words, a-z after
    normalization (no other scripts), deduplicated by normalized text."""
    pairs = read_parallel_tsv(resolve_data_path(f"sample:ddtp-de-en/{split}.tsv"))
    out, seen = [], set()
    for _, english in pairs:
        norm = normalize_text(english)
        if not 2 <= len(norm.split()) <= max_words or norm in seen:
            continue
        if not set(norm) <= set("abcdefghijklmnopqrstuvwxyz' "):
            continue
        seen.add(norm)
        out.append(english)
    return out


def voices(split: str) -> list[tuple[str, str]]:
    """``[(engine, voice)]`` for a split; espeak voices include their variant."""
    if split == "test":
        espeak = [f"{v}+{x}" for v in ESPEAK_TEST for x in VARIANTS_TEST]
        return [("espeak-ng", v) for v in espeak] + [("flite", v) for v in FLITE_TEST] * 4
    espeak = [f"{v}+{x}" for v in ESPEAK_TRAIN for x in VARIANTS_TRAIN]
    return [("espeak-ng", v) for v in espeak] + [("flite", v) for v in FLITE_TRAIN] * 6


def synthesize(engine: str, voice: str, text: str, out_wav: Path, rng: random.Random) -> str:
    """Run one TTS engine into ``out_wav``; returns a description of the voice used."""
    if engine == "espeak-ng":
        speed, pitch = rng.randint(130, 200), rng.randint(25, 75)
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out_wav)]
        cmd.append(text)
        desc = f"espeak-ng:{voice}:s{speed}:p{pitch}"
    else:
        cmd = ["flite", "-voice", voice, "-t", text, "-o", str(out_wav)]
        desc = f"flite:{voice}"
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out_wav.exists():
        raise TransduceError(f"{engine} failed on {text!r}: {proc.stderr.strip()[-300:]}")
    return desc


def prepare_speech_tts(
    out_dir: Path,
    counts: dict[str, int] | None = None,
    seed: int = 1,
    log: Callable[[str], None] = print,
) -> dict:
    """Synthesize ``counts`` clips per split into ``out_dir``; returns the card."""
    check_tools()
    counts = {**DEFAULT_COUNTS, **(counts or {})}
    out_dir = Path(out_dir)
    (out_dir / "card.json").unlink(missing_ok=True)
    rng = random.Random(seed)
    stats = {}
    with tempfile.TemporaryDirectory() as tmp:
        for split, n in counts.items():
            texts = sentences(split)
            rng.shuffle(texts)
            pool = voices(split)
            rows, seconds = [], 0.0
            for i in range(n):
                text = texts[i % len(texts)]  # more clips than sentences: new voices
                engine, voice = pool[rng.randrange(len(pool))]
                wav = Path(tmp) / "x.wav"
                desc = synthesize(engine, voice, text, wav, rng)
                wave = read_audio(wav, SAMPLE_RATE)
                rel = f"audio/{split}/{i:06d}.flac"
                write_audio(out_dir / rel, wave, SAMPLE_RATE)
                duration = round(len(wave) / SAMPLE_RATE, 3)
                seconds += duration
                rows.append({"audio": rel, "duration": duration, "text": text, "voice": desc})
            write_atomic(out_dir / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
            stats[split] = {
                "clips": len(rows),
                "sentences": len({r["text"] for r in rows}),
                "hours": round(seconds / 3600, 3),
            }
            log(f"speech-tts {split}: {stats[split]}")
    card = {
        "name": "speech-tts",
        "source": "espeak-ng and flite reading English DDTP sentences (sample:ddtp-de-en)",
        "format": "JSONL manifests {audio, duration, text, voice}; 16 kHz mono FLAC",
        "voices": {"train/valid": [v for _, v in voices("train")], "test": voices("test")},
        "split": "DDTP sentence splits; test voices and variants never in train/valid",
        "counts": stats,
        "licence": LICENCE,
        "prepared": datetime.date.today().isoformat(),
    }
    card["voices"] = {
        "train/valid": sorted({v for _, v in voices("train")}),
        "test": sorted({v for _, v in voices("test")}),
    }
    write_atomic(out_dir / "card.json", json.dumps(card, indent=2) + "\n")
    return card


__all__ = ["prepare_speech_tts", "sentences", "voices"]


SAMPLE_DIR = Path(__file__).resolve().parent.parent / "samples" / "speech-tts"


def make_sample(out_dir: Path = SAMPLE_DIR, seed: int = 3, max_words: int = 4) -> dict:
    """Regenerate the committed sample (a few dozen short clips, about 1.4 MB).

    train: 8 short training sentences x 3 training voices; valid: 6 of the same
    sentences by 2 training voices that read nothing in train, so a tiny model can
    show it learns across voices in seconds; test: 5 test sentences by test voices.
    """
    check_tools()
    rng = random.Random(seed)
    out_dir = Path(out_dir)
    train_texts = rng.sample(sentences("train", max_words), 8)
    test_texts = rng.sample(sentences("test", max_words), 5)
    train_pool = [v for v in voices("train") if v[0] == "flite" or v[1].split("+")[1] in
                  ("m1", "f2", "m3")]  # fmt: skip
    plan = {
        "train": [(t, v) for t in train_texts for v in rng.sample(train_pool, 3)],
        "valid": [
            (t, ("espeak-ng", rng.choice(["en-gb+f3", "en-us+m2"]))) for t in train_texts[:6]
        ],
        "test": [(t, rng.choice(voices("test"))) for t in test_texts],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for split, items in plan.items():
            rows = []
            for i, (text, (engine, voice)) in enumerate(items):
                wav = Path(tmp) / "x.wav"
                desc = synthesize(engine, voice, text, wav, rng)
                wave = read_audio(wav, SAMPLE_RATE)
                rel = f"audio/{split}/{i:03d}.flac"
                write_audio(out_dir / rel, wave, SAMPLE_RATE)
                rows.append(
                    {"audio": rel, "duration": round(len(wave) / SAMPLE_RATE, 3),
                     "text": text, "voice": desc}
                )  # fmt: skip
            write_atomic(out_dir / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return {split: len(items) for split, items in plan.items()}
