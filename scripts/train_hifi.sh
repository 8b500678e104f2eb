#!/usr/bin/env bash
# Fine-tune the shipped 16 kHz decoders into 44.1 kHz ones on the CPU (`train --init` across rates,
# see ensemble/training/rate_transfer.py). Two queues, one per core, so each runs one thread.
#
#   python -m ensemble corpus render --out data/corpus_hifi --seed 1 --max-pieces 160 --sample-rate 44100
#   python -m ensemble corpus cache data/corpus_hifi
#   scripts/train_hifi.sh [MINUTES_EACH]      # → data/hifi/<name>, logs in data/hifi/<name>.log
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-16}
queue() {
  for name in "$@"; do
    extra=()
    [ -f "data/hifi/$name/train_state.pt" ] && extra=(--resume)
    .venv/bin/python -m ensemble train instrument --data data/corpus_hifi --instrument "$name" \
      --init "$name" --sample-rate 44100 --out "data/hifi/$name" --time-limit "$minutes" \
      --lr 3e-4 --val-every 250 --threads 1 --quiet "${extra[@]}" > "data/hifi/$name.log" 2>&1
  done
}
mkdir -p data/hifi
queue violin drums cello bass &
queue flute clarinet viola guitar &
wait
