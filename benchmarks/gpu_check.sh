#!/bin/bash
# GPU check, run on a lent GPU machine (no network there) from the repository root:
#   1. the 60-minute CPU preset ddtp-de-en-transformer for 3.5 minutes in bf16, then evaluated;
#   2. fp16 with the GradScaler on CUDA, stopped and resumed;
#   3. the training/CLI/speech/captioning/summarization/decoding tests with device auto = CUDA.
# Needs beside the checkout: .whl/ (wheels of the dependencies the GPU image lacks, made with
# `pip download --only-binary=:all: --python-version 3.12 ...`), .gpu/site/ (pure-Python
# extras), .gpu/ddtp-de-en/ (transduce data prepare ddtp --pair de-en); results go to $OUT.
# Results of 2026-11-30: docs/results.md, "On a GPU".
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site:$PWD/.gpu/site PYTHONUNBUFFERED=1
transduce() { python3 -c 'import sys; from transduce.cli import main; sys.exit(main(sys.argv[1:]))' "$@"; }
nvidia-smi -L; python3 -c "import torch;print(torch.__version__, torch.cuda.is_available())"
mkdir -p data && cp -r .gpu/ddtp-de-en data/
( transduce train configs/ddtp-de-en-transformer.yaml train.max_minutes=3.5 train.precision=bf16 train.device=cuda > $OUT/ddtp-train.log 2>&1;
  transduce evaluate runs/ddtp-de-en-transformer/best --device cuda >> $OUT/ddtp-train.log 2>&1 ) &
( transduce train configs/demo.yaml train.max_steps=30 train.precision=fp16 train.device=cuda train.valid_every=15 --run-dir runs/fp16 > $OUT/fp16.log 2>&1;
  transduce train configs/demo.yaml train.max_steps=60 train.precision=fp16 train.device=cuda train.valid_every=15 --run-dir runs/fp16 --resume >> $OUT/fp16.log 2>&1;
  transduce predict runs/fp16/best --device cuda <<< "Das ist ein Test." >> $OUT/fp16.log 2>&1 ) 
export OMP_NUM_THREADS=2
timeout 170 python3 -m pytest -v -n 7 -p no:cacheprovider tests/integration/test_training.py tests/integration/test_cli.py \
  tests/integration/test_binarized.py tests/integration/test_speech.py tests/integration/test_captioning.py \
  tests/integration/test_summarization.py tests/integration/test_finetune.py tests/unit/training tests/unit/decoding --timeout 120 > $OUT/pytest.log 2>&1; echo "pytest rc $?" >> $OUT/pytest.log
wait
grep -E 'FAILED|ERROR|passed|failed' $OUT/pytest.log | tail -30; tail -3 $OUT/fp16.log; tail -4 $OUT/ddtp-train.log
cd runs/ddtp-de-en-transformer && tar cf - best | split -b 15m - $OUT/ddtp-best.tar.
ls -la $OUT
