#!/usr/bin/env bash
# What each robustness measure buys on real speech: leave-one-out ablation.
#
# Trains one small recognizer per variant -- all four measures on, then each one
# switched off in turn (and all off) -- for the same number of updates with the
# same seed, then scores each on the unseen synthetic voices (data/speech-tts test)
# and on the real Asterisk recordings (data/asterisk), decoding with CTC greedy.
# The model is the asr-conformer preset shrunk (4 encoder layers, 64 subsampling
# channels, 1 decoder layer, half the batch) so that the runs fit in a session; the
# full preset's figures are in docs/speech.md.
#
# Usage: scripts/asr_ablation.sh [STEPS] [VARIANT ...]
#   STEPS     updates per run (default 800)
#   VARIANT   all no-speed no-noise no-telephone no-specaug none (default: all six)
# Runs go to runs/ablation-<variant>; a summary line per variant is appended to
# runs/ablation-results.txt. Needs data/speech-tts and data/asterisk (see docs/speech.md).
set -euo pipefail
steps=${1:-800}
shift || true
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(all no-speed no-noise no-telephone no-specaug none)
threads=${THREADS:-1}
for v in "${variants[@]}"; do
  case $v in
    all) off=() ;;
    no-speed) off=("audio.speed_perturb=[]") ;;
    no-noise) off=(audio.noise_prob=0) ;;
    no-telephone) off=(audio.telephone_prob=0) ;;
    no-specaug) off=(model.encoder.specaug_freq_masks=0 model.encoder.specaug_time_masks=0) ;;
    none) off=("audio.speed_perturb=[]" audio.noise_prob=0 audio.telephone_prob=0
               model.encoder.specaug_freq_masks=0 model.encoder.specaug_time_masks=0) ;;
    *) echo "unknown variant $v" >&2; exit 2 ;;
  esac
  run=runs/ablation-$v
  transduce train configs/asr-conformer-ctc-attention.yaml --run-dir "$run" \
    model.encoder.layers=4 model.encoder.subsampling_channels=64 model.decoder.layers=1 \
    train.batch_tokens=10000 \
    train.warmup_steps=300 train.max_steps="$steps" train.max_minutes=0 \
    train.valid_every="$steps" train.valid_max_sentences=100 train.aux_losses.ctc=0.5 \
    train.average_best=false train.threads="$threads" train.progress=false \
    decode.mode=ctc_greedy "${off[@]}"
  for set in speech-tts asterisk; do
    score=$(transduce evaluate "$run/best" --data "data/$set/test.jsonl" --mode ctc_greedy \
      | grep -E '^(WER|CER|wer|cer)' | tr '\n' ' ')
    echo "$v steps=$steps $set: $score" | tee -a runs/ablation-results.txt
  done
done
