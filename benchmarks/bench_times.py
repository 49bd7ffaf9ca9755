"""How close speech recognition times come to known boundaries.

Joins N recordings of a manifest (seeded random choice) with ``--gap`` seconds of faint
noise (-70 dB) between them into one recording, transcribes it with times
(:func:`transduce.timestamps.transcribe`; the long-audio splitter cuts it at quiet
points), assigns each word to the clip it lies in, and reports per clip the error of
its first word's start and last word's end against the clip's known start and end:
with the silence trimming, without it (the raw alignment), and with the fallback heads
(every head of the last half of the decoder layers instead of the alignment heads) for
Whisper models.

    python benchmarks/bench_times.py models/whisper-base data/asterisk/test.jsonl --clips 40
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from unittest import mock

import numpy as np

import transduce
from transduce import timestamps
from transduce.data.audio import read_audio, write_audio
from transduce.tasks.speech import read_manifest


def errors(result, truth: list[tuple[float, float]]) -> tuple[list[float], int]:
    """Boundary errors (first start and last end of every clip with words) and the
    number of words that lie in no clip."""
    by_clip: list[list] = [[] for _ in truth]
    stray = 0
    for w in (w for s in result.segments for w in s.words):
        mid = (w.start + w.end) / 2
        k = next((k for k, (a, b) in enumerate(truth) if a - 0.3 <= mid <= b + 0.3), None)
        if k is None:
            stray += 1
        else:
            by_clip[k].append(w)
    out = []
    for (a, b), words in zip(truth, by_clip):
        if words:
            out += [words[0].start - a, words[-1].end - b]
    return out, stray


def summary(name: str, errs: list[float], stray: int, seconds: float) -> dict:
    e = np.abs(np.array(errs))
    return {
        "variant": name,
        "boundaries": len(e),
        "mean_abs_s": round(float(e.mean()), 3),
        "median_abs_s": round(float(np.median(e)), 3),
        "p90_abs_s": round(float(np.percentile(e, 90)), 3),
        "max_abs_s": round(float(e.max()), 3),
        "within_0.3s": round(float((e <= 0.3).mean()), 3),
        "words_outside_clips": stray,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("manifest")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.5)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="skip shorter clips")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="/tmp/bench_times.wav")
    args = parser.parse_args()

    items = [it for it in read_manifest(args.manifest) if it[1] >= args.min_seconds]
    rng = np.random.default_rng(args.seed)
    chosen = [items[i] for i in rng.choice(len(items), args.clips, replace=False)]
    parts, truth, t = [], [], 0.0
    for path, _, _ in chosen:
        wave = read_audio(path, 16000)
        parts += [wave, (rng.standard_normal(int(args.gap * 16000)) * 3e-4).astype(np.float32)]
        truth.append((t, t + len(wave) / 16000))
        t += len(wave) / 16000 + args.gap
    write_audio(Path(args.out), np.concatenate(parts[:-1]), 16000)
    predictor = transduce.load(args.model)

    def run(name: str) -> dict:
        start = time.perf_counter()
        (result,) = timestamps.transcribe(predictor, [args.out], beam=args.beam)
        return summary(
            f"{result.word_times}{name}", *errors(result, truth), time.perf_counter() - start
        )

    rows = [run(" + silence trimming")]
    with mock.patch.object(timestamps, "trim_silence", lambda words, wave, rate: words):
        rows.append(run(", no trimming"))
    tok = predictor.task.tok
    if getattr(tok, "kind", "") == "whisper" and tok.meta.get("alignment_heads"):
        heads = tok.meta.pop("alignment_heads")
        try:
            rows.append(run(" + silence trimming"))
        finally:
            tok.meta["alignment_heads"] = heads
    audio = {"clips": args.clips, "seconds": round(t - args.gap, 1), "model": args.model}
    print(json.dumps(audio))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
