#!/usr/bin/env bash
# Corpora larger than memory: binarize a 10-million-pair corpus and train on it under a
# memory cap it does not fit in; compare with today's in-memory path on full DDTP de-en.
#
#   bash benchmarks/bench_scale.sh [WORK_DIR] [PAIRS] [CAP_MB] [STEPS]
#
# Needs: root (a cgroup v1 memory controller at /sys/fs/cgroup/memory, or cgroup v2),
# the DDTP data of every pair (made here with `transduce data prepare ddtp`), ~6 GB disk.
# Writes WORK_DIR/results.txt; the README/RESULTS.md figures come from that file.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/transduce-scale}
PAIRS=${2:-10000000}
CAP_MB=${3:-1536}
STEPS=${4:-200}
BIN=${TRANSDUCE:-.venv/bin/transduce}
mkdir -p "$WORK"
OUT="$WORK/results.txt"
: >"$OUT"
say() { echo "$*" | tee -a "$OUT"; }

# 1. every DDTP pair in both directions, repeated to PAIRS lines
for p in de-en en-de fr-en en-fr es-en en-es; do
    [ -s "$WORK/ddtp-$p/train.tsv" ] ||
        "$BIN" data prepare ddtp --pair "$p" --out "$WORK/ddtp-$p" --lists-dir "$WORK/lists" >/dev/null
done
BIG="$WORK/big.tsv"
if [ ! -s "$BIG" ]; then
    cat "$WORK"/ddtp-*/train.tsv >"$WORK/all.tsv"
    python3 - "$WORK/all.tsv" "$BIG" "$PAIRS" <<'EOF'
import sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(src, "rb").read().splitlines(keepends=True)
with open(dst, "wb") as f:
    for i in range(n):
        f.write(lines[i % len(lines)])
EOF
fi
say "corpus: $(wc -l <"$BIG") pairs, $(du -BM "$BIG" | cut -f1) of text ($(nproc) cores, $(date -u +%F))"

write_config() { # name train_file
    cat >"$WORK/$1.yaml" <<EOF
task: translation
name: $1
data:
  train: $2
  valid: $WORK/ddtp-de-en/valid.tsv
  test: $WORK/ddtp-de-en/test.tsv
  max_src_len: 128
  max_tgt_len: 128
tokenizer: {type: sentencepiece, vocab_size: 8000, shared: true}
model:
  encoder: {type: transformer, d_model: 256, heads: 4, ff_dim: 1024, layers: 2}
  decoder: {type: transformer, d_model: 256, heads: 4, ff_dim: 1024, layers: 2}
  share_embeddings: true
train: {batch_tokens: 3000, lr: 2.0e-3, warmup_steps: 100, max_steps: $STEPS,
        valid_every: 100000, valid_max_sentences: 50, progress: false, log_every: 20}
EOF
}
write_config big "$BIG"
write_config ddtp "$WORK/ddtp-de-en/train.tsv"

# 2. a memory cgroup for the capped runs
CG=/sys/fs/cgroup/memory/transduce-scale
mkdir -p "$CG"
echo $((CAP_MB * 1024 * 1024)) >"$CG/memory.limit_in_bytes"
echo $((CAP_MB * 1024 * 1024)) >"$CG/memory.memsw.limit_in_bytes" 2>/dev/null || true
capped() { # run "$@" inside the cgroup; prints its peak memory (MB) to fd 3
    echo 0 >"$CG/memory.max_usage_in_bytes"
    set +e
    rm -f "$WORK/rss.txt"
    bash -c "echo \$\$ >$CG/cgroup.procs; exec /usr/bin/time -o $WORK/rss.txt -f %M $*"
    local rc=$?
    set -e
    local rss
    rss=$(tail -1 "$WORK/rss.txt" 2>/dev/null | grep -Eo '^[0-9]+$' || echo 0)
    echo "$rc $(($(cat "$CG/memory.max_usage_in_bytes") / 1024 / 1024)) $((rss / 1024))"
}
timed() { /usr/bin/time -f "%e %M" "$@"; }

# 3. binarize (uncapped: the tokenizer fit holds its sample); time and peak RSS
rm -rf "$WORK/big-bin"
timed "$BIN" data binarize "$WORK/big.yaml" --out "$WORK/big-bin" >/dev/null 2>"$WORK/binarize.time"
read -r secs kb < <(tail -1 "$WORK/binarize.time")
say "binarize: ${secs} s, peak RSS $((kb / 1024)) MB, shards $(du -sBM "$WORK/big-bin" | cut -f1)"

run_train() { # label config run_dir extra...
    local label=$1 cfg=$2 run=$3
    shift 3
    rm -rf "$run"
    local start
    start=$(date +%s.%N)
    read -r rc peak rss < <(capped "$BIN" train "$cfg" --run-dir "$run" "$@" ">$run.log" "2>&1")
    local end
    end=$(date +%s.%N)
    local first rate
    first=$(grep -m1 "step 1 loss" "$run/train.log" 2>/dev/null | cut -d' ' -f2 || true)
    rate=$(python3 - "$run/train.log" <<'EOF'
import re, sys, datetime as dt
try:
    lines = [l for l in open(sys.argv[1]) if " step " in l and " loss " in l]
except OSError:
    print("-"); sys.exit()
t = [dt.datetime.strptime(l[:23], "%Y-%m-%d %H:%M:%S,%f") for l in lines]
s = [int(re.search(r" step (\d+) ", l).group(1)) for l in lines]
print(f"{(s[-1] - s[0]) / (t[-1] - t[0]).total_seconds():.2f}" if len(s) > 1 else "-")
EOF
)
    local startup
    startup=$(python3 - "$run/train.log" "$start" <<'EOF'
import sys, datetime as dt
try:
    line = next(l for l in open(sys.argv[1]) if " step 1 loss" in l)
except (OSError, StopIteration):
    print("-"); sys.exit()
t = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
print(f"{t - float(sys.argv[2]):.1f}")
EOF
)
    say "$label: exit $rc, peak RSS ${rss} MB, cgroup peak ${peak} MB incl. page cache (cap $CAP_MB MB), start-up to first update ${startup} s, ${rate} updates/s, wall $(printf %.0f "$(echo "$end - $start" | bc)") s"
}

# 4. the 10M corpus, binarized, capped; then kill -9 in the middle and resume
run_train "10M binarized" "$WORK/big.yaml" "$WORK/run-big" "data.binarized=$WORK/big-bin"
# 5. the 10M corpus in memory, capped (expected: killed by the cap)
run_train "10M in memory" "$WORK/big.yaml" "$WORK/run-big-mem"
# 6. today's path on full DDTP de-en (31,631 pairs), same model, same cap
run_train "DDTP de-en in memory" "$WORK/ddtp.yaml" "$WORK/run-ddtp"

# 7. kill -9 a binarized run after its first checkpoint, then resume it under the cap
rm -rf "$WORK/run-kill"
(echo $BASHPID >"$CG/cgroup.procs"; exec "$BIN" train "$WORK/big.yaml" --run-dir "$WORK/run-kill" \
    "data.binarized=$WORK/big-bin" train.valid_every=40 train.max_steps=80 >"$WORK/run-kill.log" 2>&1) &
pid=$!
until [ -f "$WORK/run-kill/last.pt" ] || ! kill -0 $pid 2>/dev/null; do sleep 0.5; done
sleep 2
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
killed_at=$(python3 -c "import torch;print(torch.load('$WORK/run-kill/last.pt',weights_only=False)['progress']['step'])")
capped "$BIN" train "$WORK/big.yaml" --run-dir "$WORK/run-kill" --resume \
    "data.binarized=$WORK/big-bin" train.valid_every=40 train.max_steps=80 ">>$WORK/run-kill.log" "2>&1" >/dev/null
final=$(python3 -c "import torch;print(torch.load('$WORK/run-kill/last.pt',weights_only=False)['progress']['step'])")
say "kill -9 after the step-$killed_at checkpoint, resumed under the cap to step $final"
echo "results in $OUT"
