"""LSTM greedy decoding side by side: the peers' plain-PyTorch reference (bench_rnn.py
greedy_feed1: 2+2 layers of 512, input feeding, 25 tokens in and out), transduce, and
transduce at an older commit checked out in /tmp/before (git worktree add /tmp/before REV);
each case a fresh process, 3 rounds alternating, batch 32 and 1.

    python benchmarks/bench_lstm_decode_side.py benchmarks/peers-DATE-lstm-decode.json
"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(os.path.dirname(ROOT), "shared", "bench", "peers")
PY = os.path.expanduser("~/.cache/peer-bench/venv/bin/python")  # made by bench_peers.sh
TPY = sys.executable
out = []


def peer(batch):
    cmd = [
        PY,
        f"{PEERS}/bench_rnn.py",
        "--worker",
        "--case",
        "greedy_feed1",
        "--threads",
        "2",
        "--dec-batch",
        str(batch),
        "--src-len",
        "25",
        "--tgt-len",
        "25",
        "--warmup",
        "1",
        "--reps",
        "5",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=PEERS)
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": p.stderr[-400:]}


def trans(root, batch):
    with tempfile.TemporaryDirectory() as tmp:
        f = f"{tmp}/r.jsonl"
        cmd = [
            "env",
            f"PYTHONPATH={root}",
            "OMP_WAIT_POLICY=PASSIVE",
            TPY,
            f"{root}/benchmarks/bench_transduce.py",
            "--threads",
            "2",
            "--out",
            f,
            "decode",
            "--configs",
            "lstm",
            "--beams",
            "1",
            "--batch",
            str(batch),
            "--reps",
            "5",
        ]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if not os.path.exists(f):
            return {"error": p.stderr[-400:]}
        return json.loads(open(f).read().splitlines()[-1])


for rnd in range(3):
    for batch in (32, 1):
        for name, fn in (
            ("PyTorch LSTM (peers)", lambda b: peer(b)),
            ("transduce", lambda b: trans(ROOT, b)),
            ("transduce before", lambda b: trans("/tmp/before", b)),
        ):
            r = fn(batch)
            r.update(system=name, batch=batch, round=rnd)
            print(json.dumps(r), flush=True)
            out.append(r)
json.dump(out, open(sys.argv[1], "w"), indent=1)
