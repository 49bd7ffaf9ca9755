"""Sentences per second: transduce's Predictor against its CTranslate2 export.

Decodes the sources of a TSV (source<TAB>target, or one source per line) with a
trained model folder, beam 5 by default, three ways:

* ``transduce``: :class:`transduce.inference.Predictor`, torch with ``--threads``;
* ``ct2-float32`` and ``ct2-int8``: the model exported with ``transduce export``
  (made in a temporary folder unless ``--ct2-dir`` holds them), decoded by
  :class:`transduce.export.ctranslate2.CT2Translator` with 1 intra-op thread x 2
  workers, the fastest CTranslate2 setting on the 2-core machine (see
  ../shared/bench/peers/README.md).

Each engine first decodes a few sentences to warm up, then the whole file ``--reps``
times; the median time is reported. One JSON line per engine is appended to --out,
with the agreement of its outputs with transduce's (share of identical sentences).

Example (a smoke run; the real one drops --limit):
    python benchmarks/bench_export.py runs/demo/best data/ddtp-de-en/test.tsv --limit 20
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from transduce.export.ctranslate2 import CT2Translator, export_ctranslate2
from transduce.inference import Predictor


def read_sources(path: Path, limit: int) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    sources = [line.split("\t", 1)[0] for line in lines if line.strip()]
    return sources[:limit] if limit else sources


def timed(fn, reps: int) -> tuple[float, list[str]]:
    times, out = [], []
    for _ in range(reps):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", help="transduce model folder (Transformer)")
    ap.add_argument("sources", type=Path, help="TSV or text file of sources")
    ap.add_argument("--limit", type=int, default=0, help="first N sources only (0 = all)")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32, help="sentences per batch, all engines")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--inter-threads", type=int, default=2, help="CTranslate2 workers")
    ap.add_argument("--intra-threads", type=int, default=1, help="CTranslate2 threads/worker")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--ct2-dir", type=Path, help="reuse/keep exports here (f32/, int8/)")
    ap.add_argument("--engines", nargs="+", default=["transduce", "ct2-float32", "ct2-int8"])
    ap.add_argument("--out", default="benchmarks/results.jsonl")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    sources = read_sources(args.sources, args.limit)
    options = dict(beam=args.beam, batch_size=args.batch)
    tmp = tempfile.TemporaryDirectory() if args.ct2_dir is None else None
    ct2_root = Path(tmp.name) if tmp else args.ct2_dir

    reference: list[str] | None = None
    rows = []
    for engine in args.engines:
        if engine == "transduce":
            predictor = Predictor.load(args.model)
            decode = predictor.predict
        else:
            quantization = engine.removeprefix("ct2-")
            folder = ct2_root / quantization
            if not (folder / "model.bin").is_file():
                export_ctranslate2(args.model, folder, quantization, force=True)
            predictor = CT2Translator(
                folder, inter_threads=args.inter_threads, intra_threads=args.intra_threads
            )
            decode = predictor.predict
        decode(sources[:4], **options)  # warm-up
        seconds, outputs = timed(lambda d=decode: d(sources, **options), args.reps)
        if reference is None:
            reference = outputs
        same = sum(a == b for a, b in zip(outputs, reference)) / max(len(sources), 1)
        row = {
            "bench": "export",
            "engine": engine,
            "model": str(args.model),
            "sentences": len(sources),
            "beam": args.beam,
            "batch": args.batch,
            "threads": args.threads
            if engine == "transduce"
            else f"{args.intra_threads}x{args.inter_threads}",
            "seconds": round(seconds, 4),
            "sentences_per_s": round(len(sources) / seconds, 2),
            "same_as_first_engine": round(same, 4),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        rows.append(row)
        print(
            f"{engine:12s} {row['sentences_per_s']:8.2f} sentences/s "
            f"({row['threads']} threads, same as first engine: {same:.0%})"
        )
    with open(args.out, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
