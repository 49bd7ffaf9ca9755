"""Whisper in transduce (PyTorch fp32 and int8) vs faster-whisper (int8, float32), one run.

Every engine decodes with beam 5, language en, no timestamps, no temperature fallback,
no VAD, on the same ``--threads``, and is scored by the speech task's own ``score`` (the
English normalizer on references and hypotheses), as ``transduce evaluate`` does.
faster-whisper gets the 16 kHz waveforms transduce's reader makes (read once, before
timing); transduce gets the file paths, as ``transduce predict`` does, so recordings
longer than 30 s are cut at quiet points (its time includes reading the file, a few ms a
clip). Real-time factor = decoding seconds / audio seconds, model loading excluded.
The clips go in a seeded random order and
in chunks of ``--chunk``, every engine on the same chunk before the next, so a machine
load that changes during the run affects every engine alike and a stopped run leaves
comparable partial results (a seeded random subset) behind. Engines:

* ``transduce``: the transduce model folder, float32 (its own batching: decode.batch_size);
* ``transduce-int8``: the same with ``precision="int8"`` (dynamic int8 Linear layers);
* ``faster-whisper-int8`` / ``faster-whisper-float32``: ``faster_whisper.WhisperModel``
  on ``--ct2`` (a CTranslate2 Whisper folder: the pip packages' weights concatenated, or
  ``transduce export MODEL --format ctranslate2 --out DIR``), one clip at a time.

    python benchmarks/bench_whisper.py models/whisper-base data/asterisk/test.jsonl \\
        --ct2 /path/to/ctranslate2-whisper-folder --limit 150 \\
        --engines transduce transduce-int8 faster-whisper-int8 faster-whisper-float32

Prints and rewrites a JSON line per engine after every chunk; appends the final lines
to --out (also when stopped with Ctrl-C); hypotheses go to ``<out>.<engine>.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

import torch

import transduce
from transduce.tasks.speech import read_manifest

ENGINES = ("transduce", "transduce-int8", "faster-whisper-int8", "faster-whisper-float32")


def faster_whisper_engine(folder: str, compute_type: str, threads: int):
    """A function: list of 16 kHz waveforms -> transcripts, with faster-whisper's options."""
    from faster_whisper import WhisperModel

    model = WhisperModel(folder, device="cpu", compute_type=compute_type, cpu_threads=threads)

    def transcribe(waves: list) -> list[str]:
        texts = []
        for wave in waves:
            segments, _ = model.transcribe(
                wave,
                language="en",
                beam_size=5,
                temperature=0.0,
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=False,
                no_speech_threshold=None,
                log_prob_threshold=None,
                compression_ratio_threshold=None,
            )
            texts.append("".join(s.text for s in segments).strip())
        return texts

    return transcribe


def transduce_engine(model: str, precision: str):
    """A function: list of audio paths -> transcripts, transduce's own decoding (beam 5).

    Paths, not waveforms: ``predict`` cuts only recordings it reads into 30-second pieces.
    """
    predictor = transduce.load(model, precision=precision)
    return lambda clips: predictor.predict(clips, beam=5)


def side_by_side(
    model: str,
    manifest: str,
    engines: list[str],
    ct2: str | None = None,
    threads: int = 2,
    limit: int = 0,
    chunk: int = 25,
    seed: int = 0,
    out: str = "benchmarks/results_whisper.jsonl",
) -> dict[str, dict]:
    """Run ``engines`` chunk by chunk on the same clips; returns the last row per engine."""
    torch.set_num_threads(threads)
    if any(e.startswith("faster-whisper") for e in engines) and not ct2:
        raise SystemExit("error: the faster-whisper engines need --ct2 FOLDER")
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"error: unknown engine(s) {sorted(unknown)}; choose from {ENGINES}")
    task = transduce.load(model).task
    items = read_manifest(manifest)
    # The manifest groups clips by prompt folder (digits, letters, ...): shuffle, so any
    # prefix (--limit, or a run stopped early) is a random sample.
    random.Random(seed).shuffle(items)
    items = items[: limit or None]
    refs = [e.ref for e in task.examples(items)]
    paths = [path for path, _, _ in items]
    waves = [task._as_clip(path).wave for path in paths]
    run = {}
    for engine in engines:
        if engine.startswith("transduce"):
            run[engine] = transduce_engine(model, "int8" if engine.endswith("int8") else "fp32")
        else:
            run[engine] = faster_whisper_engine(ct2, engine.rsplit("-", 1)[1], threads)
    hyps: dict[str, list[str]] = {e: [] for e in engines}
    seconds = dict.fromkeys(engines, 0.0)
    loads: list[float] = []
    rows: dict[str, dict] = {}
    try:
        for start in range(0, len(items), chunk):
            for engine in engines:
                inputs = paths if engine.startswith("transduce") else waves
                began = time.perf_counter()
                hyps[engine] += run[engine](inputs[start : start + chunk])
                seconds[engine] += time.perf_counter() - began
                loads.append(os.getloadavg()[0])
                done = len(hyps[engine])
                audio_s = sum(len(w) for w in waves[:done]) / 16000
                scores = task.score(hyps[engine], refs[:done])
                rows[engine] = {
                    "bench": "whisper-engines",
                    "engine": engine,
                    "model": model,
                    "manifest": manifest,
                    "clips": done,
                    "of": len(items),
                    "seed": seed,
                    "audio_s": round(audio_s, 1),
                    "wer": round(scores["wer"].score, 2),
                    "cer": round(scores["cer"].score, 2),
                    "compute_s": round(seconds[engine], 1),
                    "rtf": round(seconds[engine] / audio_s, 3),
                    "threads": threads,
                    "load_avg_mean": round(sum(loads) / len(loads), 2),
                    "load_avg_max": round(max(loads), 2),
                    "cpu": platform.processor() or platform.machine(),
                    "torch": torch.__version__,
                    "date": time.strftime("%Y-%m-%d %H:%M"),
                }
                print(json.dumps(rows[engine]), flush=True)
                texts = Path(out).with_suffix(f".{engine}.txt")
                texts.write_text("".join(h + "\n" for h in hyps[engine]), encoding="utf-8")
    except KeyboardInterrupt:
        print("stopped: the rows below cover the chunks every engine finished", flush=True)
        done = min(len(h) for h in hyps.values())
        rows = {e: r for e, r in rows.items() if r["clips"] == done} if done else {}
    with open(out, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows.values()))
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The side-by-side options (shared with bench_asr.py)."""
    parser.add_argument("--ct2", help="CTranslate2 Whisper folder for the faster-whisper engines")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, help="engines to run side by side")
    parser.add_argument("--chunk", type=int, default=25, help="clips per engine turn")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clip order")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="transduce model folder (transduce import whisper)")
    parser.add_argument("manifest", help="JSONL manifest, e.g. data/asterisk/test.jsonl")
    add_arguments(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="first N shuffled clips (0 = all)")
    parser.add_argument("--out", default="benchmarks/results_whisper.jsonl")
    args = parser.parse_args()
    side_by_side(
        args.model,
        args.manifest,
        args.engines or ["transduce"],
        ct2=args.ct2,
        threads=args.threads,
        limit=args.limit,
        chunk=args.chunk,
        seed=args.seed,
        out=args.out,
    )


if __name__ == "__main__":
    main()
