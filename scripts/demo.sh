#!/usr/bin/env bash
# The demo: train a small attention LSTM (with copying) on the embedded German->English sample of
# Debian package descriptions, translate a few sentences, print test BLEU.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN=runs/demo
MINUTES=${DEMO_MINUTES:-5}
start=$(date +%s)
rm -rf "$RUN"
echo "== training a small attention LSTM for $MINUTES minutes (embedded DDTP de-en sample)"
$BIN/transduce train configs/demo.yaml --run-dir "$RUN" train.max_minutes="$MINUTES"
echo
echo "== translating a few German package descriptions (beam 5)"
cat > "$RUN/examples.de" <<'TXT'
Dokumentation für das Paket
Bibliothek zum Lesen und Schreiben von Bilddateien
Dieses Paket enthält die Entwicklungsdateien.
Ein einfacher Texteditor für die Konsole
Python-3-Modul für die Verarbeitung von XML-Dateien
Das Programm ist einfach zu benutzen. Dieses Paket enthält die Dokumentation.
TXT
paste "$RUN/examples.de" <($BIN/transduce predict "$RUN/best" "$RUN/examples.de" --beam 5) \
  | sed 's/\t/\n   -> /'
echo
echo "== test set (beam 5)"
$BIN/transduce evaluate "$RUN/best" --split test --beam 5
echo
echo "demo finished in $(( $(date +%s) - start )) s"
