#!/usr/bin/env bash
# The alignment pictures in docs/: four small models trained on the committed samples
# The captioning picture (docs/caption-attention.png) is from the 45-minute Tux Paint run.
# (Models smaller than the presets so that a few minutes on one thread teach them something),
# then `predict --attention-plot` for each task.
#   bash scripts/docs_figures.sh     # -> docs/align-{translation,summary,speech,speech-ctc}.png
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUNS=${RUNS:-runs/docs-figures}
MIN=${MINUTES:-9}
mkdir -p "$RUNS"
common="train.threads=1 train.progress=false"

[ -d "$RUNS/translate/best" ] || $BIN/transduce train configs/ddtp-de-en-lstm-attention.yaml \
  --run-dir "$RUNS/translate" $common train.max_minutes="$MIN" train.valid_every=300 \
  tokenizer.vocab_size=1000 model.encoder.embed_dim=128 model.encoder.hidden_size=128 \
  model.decoder.embed_dim=128 model.decoder.hidden_size=256 train.batch_tokens=2000 \
  train.warmup_steps=100 train.lr=3e-3 train.valid_max_sentences=100 data.max_src_len=60 \
  data.train=sample:ddtp-de-en/train.tsv data.valid=sample:ddtp-de-en/valid.tsv \
  data.test=sample:ddtp-de-en/test.tsv
[ -d "$RUNS/summarize/best" ] || $BIN/transduce train configs/summarize-lstm-pointer.yaml \
  --run-dir "$RUNS/summarize" $common train.max_minutes="$MIN" train.valid_every=300 \
  tokenizer.vocab_size=5000 train.batch_tokens=3000 train.warmup_steps=100 \
  train.valid_max_sentences=100 \
  data.train=sample:debian-summaries-en/train.tsv data.valid=sample:debian-summaries-en/valid.tsv \
  data.test=sample:debian-summaries-en/test.tsv
cat > "$RUNS/asr.yaml" <<'YAML'
task: speech
name: docs-asr
data: {train: sample:speech-tts/train.jsonl, valid: sample:speech-tts/valid.jsonl, test: sample:speech-tts/test.jsonl}
tokenizer: {type: char}
audio: {max_seconds: 6.0}
model:
  encoder: {type: conformer, d_model: 64, heads: 4, ff_dim: 128, layers: 2, subsampling_channels: 32,
            dropout: 0.0, specaug_time_masks: 0, specaug_freq_masks: 0}
  decoder: {type: transformer, d_model: 64, heads: 4, ff_dim: 128, layers: 2, dropout: 0.0}
train: {batch_tokens: 2500, lr: 3.0e-3, warmup_steps: 20, max_steps: 500, valid_every: 250,
        label_smoothing: 0.0, aux_losses: {ctc: 0.5}, early_stop_metric: cer}
decode: {beam: 4, max_len_a: 0.5, max_len_b: 5, mode: joint}
YAML
[ -d "$RUNS/asr/best" ] || $BIN/transduce train "$RUNS/asr.yaml" --run-dir "$RUNS/asr" $common \
  train.max_minutes="$MIN"

echo "Dieses Paket enthält die Entwicklungsdateien." > "$RUNS/in.de"
$BIN/transduce predict "$RUNS/translate/best" "$RUNS/in.de" --beam 5 \
  --attention-plot docs/align-translation.png
sed -n 18p transduce/data/samples/debian-summaries-en/test.tsv | cut -f1 > "$RUNS/doc.txt"
$BIN/transduce predict "$RUNS/summarize/best" "$RUNS/doc.txt" --beam 4 \
  --attention-plot docs/align-summary.png
clip=$(ls transduce/data/samples/speech-tts/audio/train/* | head -1)
$BIN/transduce predict "$RUNS/asr/best" "$clip" --mode joint --attention-plot docs/align-speech.png
$BIN/transduce predict "$RUNS/asr/best" "$clip" --mode ctc_greedy \
  --attention-plot docs/align-speech-ctc.png
