#!/usr/bin/env bash
# transduce vs HF transformers vs CTranslate2 (fp32 and int8), one invocation, one table.
# Usage: bash benchmarks/bench_peers.sh [bench_peers.py options]   (from the repo root)
# The peers get their own virtual environment (not in the repo), created on first use:
#   PEERS_VENV (default ~/.cache/peer-bench/venv), models under ~/.cache/peer-bench/models.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS_DIR=${PEERS_DIR:-$(cd .. && pwd)/shared/bench/peers}
PEERS_VENV=${PEERS_VENV:-$HOME/.cache/peer-bench/venv}
if [ ! -x "$PEERS_VENV/bin/python" ]; then
    python3 -m venv "$PEERS_VENV"
    "$PEERS_VENV/bin/pip" install --quiet torch==2.13.0
    "$PEERS_VENV/bin/pip" install --quiet transformers ctranslate2 sentencepiece numpy psutil
fi
MODELS=${PERFANCHORS_ROOT:-$HOME/.cache/peer-bench}/models
if [ ! -d "$MODELS/ct2_base_int8" ]; then
    (cd "$PEERS_DIR" && "$PEERS_VENV/bin/python" prepare_models.py --configs small base)
fi
exec .venv/bin/python benchmarks/bench_peers.py --peers-dir "$PEERS_DIR" \
    --peers-python "$PEERS_VENV/bin/python" "$@"
