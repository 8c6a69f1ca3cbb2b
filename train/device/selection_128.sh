#!/usr/bin/env bash
# Run THERE after `source train/device/setup.sh` (data/psp-faces128 merged from its carried parts): teach the bundled
# 128 px model reference selection (train/configs/psp-128-selection.yaml: every trained module frozen, only the
# selection head learns from distractor references). The export comes back in $OUT in 15 MB parts (one 55 MB file
# is over the per-file return limit, and $OUT is emptied at every call, so it must be split in this call).
#   bash train/device/selection_128.sh MINUTES [key=value ...]
# The bundled model reaches the machine as the tracked checkpoints/psp-gan-128/model.safetensors or as .carry/psp128.
set -uo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-3.8}
shift
out=${OUT:-/tmp/out}
src=checkpoints/psp-gan-128
[ -f "$src/model.safetensors" ] || src=.carry/psp128
mkdir -p "$out"
python3 train/train.py --config train/configs/psp-128-selection.yaml --max-minutes "$minutes" --export \
    tracker=none init_from="$src" export_dir=/tmp/psp-128-selection "$@"
status=$?
[ -d /tmp/psp-128-selection ] && tar -C /tmp -cf - psp-128-selection | split -b 15M -d - "$out/psp-128-selection.tar.part"
cp runs/psp-128-selection/metrics.jsonl runs/psp-128-selection/last_run.json "$out/" 2>/dev/null
exit "$status"
