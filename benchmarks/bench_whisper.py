"""Imported Whisper through transduce's own PyTorch decoding vs faster-whisper, one run.

Both read the same 16 kHz waveforms (transduce's reader and resampler), decode with
beam 5, language en, no timestamps, no temperature fallback, no VAD, and are scored
by the speech task's own ``score`` (the English normalizer on references and
hypotheses), as ``transduce evaluate`` does. Real-time factor = decoding seconds /
audio seconds, model loading excluded, on the same threads.

    python benchmarks/bench_whisper.py models/whisper-base data/asterisk/test.jsonl \\
        --ct2 /path/to/ctranslate2-whisper-folder --engines transduce faster-whisper-int8

Writes a JSON line per engine to --out as soon as it finishes (long runs keep
partial results).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

import torch

import transduce
from transduce.tasks.speech import read_manifest


def run_faster_whisper(folder: str, compute_type: str, waves: list, threads: int) -> list[str]:
    from faster_whisper import WhisperModel

    model = WhisperModel(folder, device="cpu", compute_type=compute_type, cpu_threads=threads)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="transduce model folder (transduce import whisper)")
    parser.add_argument("manifest", help="JSONL manifest, e.g. data/asterisk/test.jsonl")
    parser.add_argument("--ct2", help="CTranslate2 Whisper folder for faster-whisper")
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["transduce"],
        choices=["transduce", "faster-whisper-int8", "faster-whisper-float32"],
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=50, help="clips scored and saved at a time")
    parser.add_argument("--out", default="benchmarks/results_whisper.jsonl")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    predictor = transduce.load(args.model)
    task = predictor.task
    items = read_manifest(args.manifest)
    # A seeded shuffle: partial results of a long run are a random sample of the clips
    # (the manifest groups them by prompt folder: digits, letters, ...).
    random.Random(0).shuffle(items)
    items = items[: args.limit or None]
    examples = task.examples(items)
    clips = [task._as_clip(path) for path, _, _ in items]
    waves = [c.wave for c in clips]
    refs = [e.ref for e in examples]
    paths = [path for path, _, _ in items]
    hyps: dict[str, list[str]] = {e: [] for e in args.engines}
    seconds = dict.fromkeys(args.engines, 0.0)
    rows: dict[str, dict] = {}
    # Chunk by chunk, every engine on the same clips, so a long run leaves scored,
    # comparable partial results behind.
    for start in range(0, len(items), args.chunk):
        for engine in args.engines:
            began = time.perf_counter()
            if engine == "transduce":
                hyps[engine] += predictor.predict(paths[start : start + args.chunk])
            else:
                if not args.ct2:
                    parser.error(f"{engine} needs --ct2 FOLDER")
                chunk = waves[start : start + args.chunk]
                compute = engine.rsplit("-", 1)[1]
                hyps[engine] += run_faster_whisper(args.ct2, compute, chunk, args.threads)
            seconds[engine] += time.perf_counter() - began
            done = len(hyps[engine])
            audio_s = sum(len(w) for w in waves[:done]) / 16000
            scores = task.score(hyps[engine], refs[:done])
            rows[engine] = {
                "engine": engine,
                "model": args.model,
                "clips": done,
                "of": len(items),
                "audio_s": round(audio_s, 1),
                "wer": round(scores["wer"].score, 2),
                "cer": round(scores["cer"].score, 2),
                "rtf": round(seconds[engine] / audio_s, 3),
                "threads": args.threads,
                "cpu": platform.processor() or platform.machine(),
                "date": time.strftime("%Y-%m-%d %H:%M"),
            }
            print(json.dumps(rows[engine]), flush=True)
            texts = Path(args.out).with_suffix(f".{engine}.txt")
            texts.write_text("".join(h + "\n" for h in hyps[engine]), encoding="utf-8")
    with open(args.out, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows.values()))


if __name__ == "__main__":
    main()
