#!/usr/bin/env bash
# Multi-process speed-up on this machine: the same model and batches trained with
# 1 process (all cores) and with N processes (cores split between them), side by side.
#
#   bash benchmarks/bench_nproc.sh [STEPS] [NPROC] [CONFIG]
#
# One update covers the same data in both runs: the single process accumulates NPROC
# batches (train.accumulate=NPROC), the N processes take one batch each. Prints
# updates/s, target tokens/s and the share of wall time in the gradient all-reduce
# (waiting for the slowest rank included), read from each run's train.log.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-60}
NPROC=${2:-2}
CONFIG=${3:-configs/demo.yaml}
BIN=${TRANSDUCE:-.venv/bin/transduce}
WORK=$(mktemp -d /tmp/transduce-nproc.XXXX)
CORES=$(nproc)
common=("train.max_steps=$STEPS" "train.max_minutes=0" "train.valid_every=100000"
    "train.valid_max_sentences=20" "train.progress=false" "train.log_every=10")

"$BIN" train "$CONFIG" --run-dir "$WORK/one" "${common[@]}" \
    "train.accumulate=$NPROC" "train.threads=$CORES" >/dev/null 2>&1
"$BIN" train "$CONFIG" --run-dir "$WORK/many" --nproc "$NPROC" "${common[@]}" \
    "train.threads=$((CORES / NPROC > 0 ? CORES / NPROC : 1))" >/dev/null 2>&1

python3 - "$WORK" "$NPROC" "$CORES" "$CONFIG" <<'EOF'
import datetime as dt
import re
import sys

work, nproc, cores, config = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def rates(run):
    rows = []
    for line in open(f"{work}/{run}/train.log"):
        m = re.search(r" step (\d+) loss \S+ lr \S+ tok/s (\d+)(?: allreduce ([\d.]+)%)?", line)
        if m:
            when = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            rows.append((when, int(m.group(1)), int(m.group(2)), float(m.group(3) or 0)))
    rows = rows[1:]  # the first line covers start-up
    secs = (rows[-1][0] - rows[0][0]).total_seconds()
    ups = (rows[-1][1] - rows[0][1]) / secs
    toks = sum(r[2] for r in rows[1:]) / len(rows[1:])
    comm = sum(r[3] for r in rows[1:]) / len(rows[1:])
    return ups, toks, comm


one, many = rates("one"), rates("many")
print(f"{config}, {cores} cores, {dt.date.today()}")
print("| processes | threads each | updates/s | target tok/s | all-reduce share |")
print("|---|---|---|---|---|")
print(f"| 1 (accumulate {nproc}) | {cores} | {one[0]:.2f} | {one[1]:,.0f} | - |")
print(f"| {nproc} | {max(cores // nproc, 1)} | {many[0]:.2f} | {many[1]:,.0f} | {many[2]:.1f}% |")
print(f"speed-up: {many[0] / one[0]:.2f}x")
EOF
rm -rf "$WORK"
