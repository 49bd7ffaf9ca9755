"""transduce, Hugging Face transformers and CTranslate2 side by side, in one invocation.

Every case runs in a fresh process, one after the other, interleaved per workload
(so a change of load on a shared machine hits every system alike); the peers run
in their own virtual environment through ../shared/bench/peers's worker mode
(``bench_infer.py --worker`` / ``bench_train.py --worker``), transduce through
``bench_transduce.py``. One Markdown table comes out (stdout and ``--md``), the raw
records go to ``--out``.

Decoding workload (the peers'): batch 32 random sources of 25 tokens, exactly 25
target tokens, greedy and beam 4, random-weight Marian-shaped models "small"
(3+3, d 256, vocab 8000) and "base" (6+6, d 512, vocab 32000); target tokens/s.
CTranslate2 runs at its best setting on a 2-core machine (1 thread x 2 workers,
the batch split in two); HF generate and transduce use ``--threads`` threads.
Training: forward + backward + AdamW on 4096-token batches (128 x 32), transduce also
with 2 processes of 1 thread ("transduce 2 proc", as ``transduce train --nproc 2``;
each takes half of every batch, one all-reduce per update): "small" and
"base" against HF's Marian, "lstm" (attention LSTM, 2+2 layers of 512, input feeding)
against the peers' plain-PyTorch reference of the same shape (``bench_rnn.py``,
column "PyTorch LSTM": HF has no RNN encoder-decoder). ``--train-bf16`` adds the
Transformers trained under bf16 autocast on both sides ("transduce bf16" as
``train.precision: bf16``, "HF bf16" the peers' bf16 mode).

Use ``bench_peers.sh``, which creates the peers' environment and models first.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSTEMS = ["transduce fp32", "transduce int8", "HF", "CT2 fp32", "CT2 int8"]
TWO_PROC = "transduce 2 proc"  # training as `transduce train --nproc 2`: 2 processes x 1 thread
LSTM_REF = "PyTorch LSTM"  # the peers' reference attention LSTM, trained in "train lstm"
BF16 = ("transduce bf16", "HF bf16")  # --train-bf16: training under bf16 autocast, both sides
PEER_DECODE = {"HF": "hf", "CT2 fp32": "ct2_float32_i1x2", "CT2 int8": "ct2_int8_i1x2"}


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def run(cmd: list[str], timeout: int) -> tuple[str, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "", f"timeout after {timeout}s"
    return p.stdout, "" if p.returncode == 0 else (p.stderr or p.stdout)[-600:]


def peer_case(args, script: str, extra: list[str]) -> dict:
    cmd = [args.peers_python, str(Path(args.peers_dir) / script), "--worker", *extra]
    out, err = run(cmd, args.timeout)
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"error": err or "no RESULT line"}


def transduce_case(args, bench: str, extra: list[str], root: Path = HERE.parent) -> dict:
    """bench_transduce.py of the checkout at ``root`` (this one, or ``--before``)."""
    with tempfile.TemporaryDirectory() as tmp:
        out_file = Path(tmp) / "rows.jsonl"
        script = root / "benchmarks" / "bench_transduce.py"
        cmd = ["env", f"PYTHONPATH={root}", sys.executable, str(script)]
        cmd += ["--threads", str(args.threads), "--out", str(out_file)]
        _, err = run([*cmd, bench, *extra], args.timeout)
        if err or not out_file.exists():
            return {"error": err or "no result"}
        return json.loads(out_file.read_text().splitlines()[-1])


def decode_cell(args, config: str, beam: int, system: str, batch: int = 32) -> dict:
    if system == "transduce before":
        shape = ["--configs", config, "--beams", str(beam), "--reps", str(args.reps)]
        shape += ["--batch", str(batch)]
        rec = transduce_case(args, "decode", shape, Path(args.before))
        return {**rec, "tok_s": rec.get("tgt_tok_s")}
    if system.startswith("transduce"):
        precision = system.split()[1]
        rec = transduce_case(
            args,
            "decode",
            ["--configs", config, "--beams", str(beam), "--reps", str(args.reps)]
            + ["--precision", precision, "--batch", str(batch)],
        )
        return {**rec, "tok_s": rec.get("tgt_tok_s")}
    shape = ["--batch", str(batch), "--src-len", "25", "--tgt-len", "25", "--reps", str(args.reps)]
    return peer_case(
        args,
        "bench_infer.py",
        ["--system", PEER_DECODE[system], "--config", config, "--beam", str(beam)]
        + ["--threads", str(args.threads), "--warmup", "1", *shape],
    )


def train_cell(args, config: str, system: str) -> dict:
    if system.startswith("transduce"):
        root = Path(args.before) if system == "transduce before" else HERE.parent
        steps = ["--configs", config, "--steps", str(args.train_steps)]
        if system == TWO_PROC:
            steps += ["--nproc", "2"]
        if system == "transduce bf16":
            steps += ["--precision", "bf16"]
        rec = transduce_case(args, "train", steps, root)
        return {**rec, "tok_s": rec.get("tgt_tok_s")}
    if config == "lstm":
        return peer_case(
            args,
            "bench_rnn.py",
            ["--case", "train_fp32_feed1", "--threads", str(args.threads)]
            + ["--batch-tokens", "4096", "--seq-len", "32", "--warmup", "2"]
            + ["--reps", str(args.train_steps)],
        )
    rec = peer_case(
        args,
        "bench_train.py",
        ["--config", config, "--mode", "bf16" if system == "HF bf16" else "fp32"]
        + ["--threads", str(args.threads)]
        + ["--batch-tokens", "4096", "--seq-len", "32", "--warmup", "2"]
        + ["--steps", str(args.train_steps)],
    )
    return {**rec, "tok_s": rec.get("tgt_tok_s")}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(v) -> str:
    return "" if v is None else f"{v:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--peers-dir", default=str(HERE.parent.parent / "shared" / "bench" / "peers"))
    ap.add_argument(
        "--peers-python",
        default=os.path.expanduser("~/.cache/peer-bench/venv/bin/python"),
        help="python of the peers' own virtual environment",
    )
    ap.add_argument("--configs", nargs="+", default=["small", "base"])
    ap.add_argument("--beams", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument(
        "--train", nargs="*", default=["small", "base", "lstm"], help="training configs"
    )
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument(
        "--batch1",
        nargs="*",
        default=["base"],
        help="configs also decoded greedily one sentence at a time (the per-step latency)",
    )
    ap.add_argument(
        "--train-bf16",
        action="store_true",
        help="also train the Transformers under bf16 autocast, transduce (`train.precision: "
        "bf16`) and HF (the peers' bf16 mode)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every workload's systems this many times, round after round, each in a "
        "fresh process; the table takes medians (a noisy host moves whole processes)",
    )
    ap.add_argument("--timeout", type=int, default=900, help="seconds per case")
    ap.add_argument(
        "--before",
        help="another transduce checkout (e.g. `git worktree add /tmp/before main`): "
        "adds its fp32 figures as a 'transduce before' column",
    )
    ap.add_argument(
        "--systems",
        nargs="+",
        choices=SYSTEMS,
        default=SYSTEMS,
        help="a subset, e.g. `--systems 'transduce fp32'` with --before on a loaded machine",
    )
    ap.add_argument("--out", default="benchmarks/peers.json")
    ap.add_argument("--md", default="benchmarks/peers.md")
    args = ap.parse_args()

    systems = (["transduce before"] if args.before else []) + args.systems
    train_systems = [s for s in systems if s in ("transduce before", "transduce fp32", "HF")]
    if args.train and "transduce fp32" in systems and args.threads == 2:
        systems.append(TWO_PROC)
        train_systems.insert(train_systems.index("transduce fp32") + 1, TWO_PROC)
    if "lstm" in args.train and "HF" in systems:
        systems.append(LSTM_REF)
    if args.train_bf16 and "transduce fp32" in systems and "HF" in systems:
        systems += BF16
        train_systems += BF16
    decode_systems = [s for s in systems if s not in (LSTM_REF, TWO_PROC, *BF16)]
    records = []

    def case(workload: str, system: str, fn, round_: int = 0) -> None:
        before = loadavg()
        start = time.time()
        rec = fn()
        rec.update(workload=workload, system=system, load_before=before, load_after=loadavg())
        rec["round"] = round_
        rec["wall_s"] = round(time.time() - start, 1)
        records.append(rec)
        shown = fmt(rec.get("tok_s")) if "error" not in rec else "ERROR " + rec["error"][-200:]
        print(f"{workload:22s} {system:15s} {shown} (load {before:.1f})", file=sys.stderr)

    def rounds(workload: str, systems: list[str], cell) -> None:
        """Every system once per round, ``--rounds`` rounds in a row: the systems of a
        round run within a minute of each other, so a change of load hits them alike."""
        for r in range(args.rounds):
            for system in systems:
                case(workload, system, functools.partial(cell, system), r)

    for config in args.configs:
        for beam in args.beams:
            workload = f"{config} {'greedy' if beam == 1 else f'beam {beam}'}"
            rounds(workload, decode_systems, lambda s, c=config, b=beam: decode_cell(args, c, b, s))
    for config in args.batch1:
        rounds(
            f"{config} greedy batch 1",
            decode_systems,
            lambda s, c=config: decode_cell(args, c, 1, s, 1),
        )
    for config in args.train:
        systems_here = []
        for system in train_systems:
            if config == "lstm" and system == "HF":
                system = LSTM_REF
            if config == "lstm" and system in BF16:
                continue  # the peers' LSTM reference has no bf16 mode
            systems_here.append(system)
        rounds(f"train {config}", systems_here, lambda s, c=config: train_cell(args, c, s))

    per_round = {}  # workload -> system -> [tok/s of each round]
    for r in records:
        per_round.setdefault(r["workload"], {}).setdefault(r["system"], []).append(r.get("tok_s"))
    table = {
        w: {s: _median([v for v in vals if v]) for s, vals in row.items()}
        for w, row in per_round.items()
    }
    pairs = {
        "fp32 / HF": ("transduce fp32", "HF"),
        "fp32 / CT2 fp32": ("transduce fp32", "CT2 fp32"),
        "int8 / CT2 int8": ("transduce int8", "CT2 int8"),
        "fp32 / before": ("transduce fp32", "transduce before"),
        "2 proc / HF": (TWO_PROC, "HF"),
        "fp32 / LSTM ref": ("transduce fp32", LSTM_REF),
        "2 proc / LSTM ref": (TWO_PROC, LSTM_REF),
        "bf16 / HF bf16": BF16,
        "bf16 / HF": ("transduce bf16", "HF"),
    }
    pairs = {n: (a, b) for n, (a, b) in pairs.items() if a in systems and b in systems}
    ratio_names = list(pairs)
    lines = [
        "| workload | " + " | ".join(systems + ratio_names) + " |",
        "|---" * (len(systems) + len(ratio_names) + 1) + "|",
    ]
    for workload, row in table.items():

        def ratio(a: str, b: str, rounds=per_round[workload]) -> str:
            """The median of the rounds' ratios: each ratio compares runs a minute apart."""
            pairs = [(x, y) for x, y in zip(rounds.get(a, []), rounds.get(b, [])) if x and y]
            return f"{_median([x / y for x, y in pairs]):.2f}" if pairs else ""

        cells = [fmt(row.get(s)) for s in systems]
        ratios = [ratio(a, b) for a, b in pairs.values()]
        lines.append(f"| {workload} | " + " | ".join(cells + ratios) + " |")
    loads = [r["load_before"] for r in records] + [r["load_after"] for r in records]
    meta = dict(
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        machine=platform.processor() or platform.machine(),
        cpus=os.cpu_count(),
        threads=args.threads,
        load_min=min(loads),
        load_max=max(loads),
    )
    footer = (
        f"\n{meta['date']}, {meta['cpus']} CPUs ({meta['machine']}), {args.threads} threads; "
        f"target tokens/s, median of {args.reps} runs"
        + (
            f" in each of {args.rounds} rounds (cells: median over rounds; ratios: "
            "median of the rounds' ratios)"
            if args.rounds > 1
            else ""
        )
        + "; 1-minute load average "
        f"{meta['load_min']:.1f}-{meta['load_max']:.1f} during the run.\n"
    )
    for config in args.batch1:  # the latency target: a step's time against CT2 int8's
        row = table.get(f"{config} greedy batch 1", {})
        for name in ("transduce fp32", "transduce int8"):
            if row.get(name) and row.get("CT2 int8"):
                footer += (
                    f"{config}, batch 1, one greedy step: {name} takes "
                    f"{row['CT2 int8'] / row[name]:.2f}x the time of CT2 int8 "
                    f"({1000 / row[name]:.1f} against {1000 / row['CT2 int8']:.1f} ms).\n"
                )
    text = "\n".join(lines) + "\n" + footer
    print(text)
    Path(args.md).write_text(text, encoding="utf-8")
    Path(args.out).write_text(json.dumps({"meta": meta, "records": records}, indent=1) + "\n")


if __name__ == "__main__":
    main()
