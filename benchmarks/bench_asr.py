"""Real-time factor of speech recognition: seconds of compute per second of audio.

Transcribes the clips of a manifest (JSONL: audio, duration, text) with a trained
speech model folder, once per decoding mode, on ``--threads`` torch threads. The
time covers everything ``Predictor.predict`` does for a list of audio files:
reading and resampling the file, log-mel features, the encoder and the search.
Each mode first decodes ``--warmup`` clips untimed, then the whole list ``--reps``
times; the median is reported. RTF < 1 means faster than real time.

One JSON line per mode is appended to --out, with WER/CER of that mode on the
clips (so a speed-up is never bought with silent accuracy loss).

Example (a smoke run on the committed sample):
    python benchmarks/bench_asr.py runs/asr-conformer/best \\
        transduce/data/samples/asterisk/test.jsonl --modes ctc_greedy joint --limit 10

With ``--engines`` (Whisper models) it runs engines side by side instead of modes:
transduce fp32 / int8 and faster-whisper int8 / float32 on the same clips, chunk by
chunk, in one run (``bench_whisper.side_by_side``; clips in a seeded random order):
    python benchmarks/bench_asr.py models/whisper-base data/asterisk/test.jsonl \\
        --ct2 CT2_WHISPER_DIR --limit 150 --engines transduce transduce-int8 \\
        faster-whisper-int8 faster-whisper-float32
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from bench_whisper import add_arguments, side_by_side

from transduce.inference import Predictor
from transduce.tasks.speech import read_manifest


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", help="speech model folder, e.g. runs/asr-conformer/best")
    ap.add_argument("manifest", help="JSONL manifest of the clips to transcribe")
    ap.add_argument("--modes", nargs="+", default=["ctc_greedy", "attention", "joint"])
    ap.add_argument("--beam", type=int, help="beam for attention/joint (default: the model's)")
    ap.add_argument("--batch", type=int, default=1, help="clips per batch (1 = one at a time)")
    ap.add_argument("--limit", type=int, default=0, help="first N clips only (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results.jsonl")
    add_arguments(ap)
    args = ap.parse_args()
    if args.engines:
        side_by_side(
            args.model,
            args.manifest,
            args.engines,
            ct2=args.ct2,
            threads=args.threads,
            limit=args.limit,
            chunk=args.chunk,
            seed=args.seed,
            out=args.out,
        )
        return

    torch.set_num_threads(args.threads)
    predictor = Predictor.load(args.model)
    items = read_manifest(args.manifest)
    if args.limit:
        items = items[: args.limit]
    examples = predictor.task.examples(items)  # refs normalized as `transduce evaluate` does
    files = [e.src_text for e in examples]
    refs = [e.ref for e in examples]
    audio_s = sum(duration for _, duration, _ in items)
    for mode in args.modes:
        options = {"mode": mode, "batch_size": args.batch, "beam": args.beam}
        predictor.predict(files[: args.warmup], **options)
        times, hyps = [], []
        for _ in range(args.reps):
            start = time.perf_counter()
            hyps = predictor.predict(files, **options)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        metrics = predictor.task.score(hyps, refs)  # the task's own WER and CER
        row = {
            "bench": "asr-rtf",
            "model": args.model,
            "manifest": args.manifest,
            "mode": mode,
            "beam": 1 if mode == "ctc_greedy" else predictor.decode_config(beam=args.beam).beam,
            "batch": args.batch,
            "clips": len(files),
            "audio_s": round(audio_s, 1),
            "compute_s": round(seconds, 2),
            "rtf": round(seconds / audio_s, 4),
            "wer": round(metrics["wer"].score, 2),
            "cer": round(metrics["cer"].score, 2),
            "threads": args.threads,
            "torch": torch.__version__,
            "machine": cpu_name(),
            "date": time.strftime("%Y-%m-%d"),
        }
        print(json.dumps(row), flush=True)
        with Path(args.out).open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
