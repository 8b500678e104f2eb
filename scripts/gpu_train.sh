#!/usr/bin/env bash
# Train the shipped specialists and the conductor in parallel on one GPU, from a training pack
# (ensemble/data/pack.py). This is how checkpoints/ was produced; see README "Training".
#
# usage: scripts/gpu_train.sh PACK OUT MINUTES INSTRUMENT...
#   PACK     folder written by `python -m ensemble corpus pack`
#   OUT      where checkpoints/<name>/ folders and logs/ are written
#   MINUTES  wall-time budget of every training job (they run at the same time)
set -uo pipefail
pack=$1 out=$2 minutes=$3
shift 3
device=${DEVICE:-cuda}
python=${PYTHON:-python3}
work=$(mktemp -d)
mkdir -p "$out/logs"
"$python" -m ensemble corpus unpack "$pack" --out "$work" || exit 1

pids=()
for name in "$@"; do
  "$python" -m ensemble train instrument --data "$work/decoders" --instrument "$name" \
    --out "$out/$name" --device "$device" --steps 1000000 --time-limit "$minutes" --quiet \
    >"$out/logs/$name.log" 2>&1 &
  pids+=($!)
done
"$python" -m ensemble train conductor --data "$work/conductor" --out "$out/conductor" \
  --device "$device" --steps 1000000 --max-minutes "$minutes" >"$out/logs/conductor.log" 2>&1 &
pids+=($!)

status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for log in "$out"/logs/*.log; do echo "== $log"; tail -n 3 "$log"; done
exit $status
