#!/usr/bin/env bash
# Run THERE after `source train/device/setup.sh` and `source train/device/setup_256.sh` (data/psp-faces128 and
# data/sharp256 merged from their carried parts): one chunk of PSP-GAN 256 (train/configs/psp-256.yaml), grown from
# the bundled 128 px model on the first chunk, resumed from this machine's checkpoint with --resume; the EMA export
# and the run's metrics and latest sample grid come back in $OUT (export in 15 MB parts).
#   bash train/device/psp256_round.sh MINUTES [--resume] [key=value ...]
# The 128 px model reaches the machine once: as the tracked checkpoints/psp-gan-128/model.safetensors (do not move
# it aside in that call) or as .carry/psp128 (its config.json and model.safetensors); it is kept in /tmp/psp-gan-128
# while the machine stays warm. On a fresh machine, continue from an earlier export instead of the 128 px model with
# `init_from=<carried export folder>` (the same architecture loads whole; discriminators and optimizers restart).
# Sharp faces only (no 128 px corpus carried): `data.extra_path=null data.extra_fraction=0`.
set -uo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-8}
shift
out=${OUT:-/tmp/out}
init=${INIT_DIR:-/tmp/psp-gan-128}  # where the 128 px model is kept on the machine
run=${RUN:-runs/psp-256}  # the run's folder (output_dir)
mkdir -p "$out" "$init"
for src in checkpoints/psp-gan-128 .carry/psp128; do
  if [ -f "$src/model.safetensors" ] && [ ! -f "$init/model.safetensors" ]; then
    cp "$src/config.json" "$src/model.safetensors" "$init/"
  fi
done
# options (--resume, --max-steps-this-run N) before the key=value overrides: argparse takes the overrides only as
# one run of positionals
resume=0 flags=() overrides=()
while [ $# -gt 0 ]; do
  case "$1" in
    --resume) resume=1; flags+=("$1") ;;
    --max-steps-this-run) flags+=("$1" "$2"); shift ;;
    --*) flags+=("$1") ;;
    *) overrides+=("$1") ;;
  esac
  shift
done
if [ "$resume" = 1 ] && ! ls -d "$run"/checkpoints/checkpoint-* >/dev/null 2>&1; then
  echo "--resume: no checkpoint in $run on this machine (a fresh one): continue with init_from=<last export>" >&2
  exit 2
fi
if [ -f "$init/model.safetensors" ]; then
  init_arg="init_from=$init"
elif [ "$resume" = 1 ]; then
  init_arg="init_from=null"  # every weight comes from the checkpoint
else
  echo "no 128 px model here: carry checkpoints/psp-gan-128/model.safetensors or .carry/psp128 in this call" >&2
  exit 2
fi
# later key=value arguments win, so a given init_from=... replaces the 128 px model
python3 train/train.py --config train/configs/psp-256.yaml --max-minutes "$minutes" --export "${flags[@]}" \
    tracker=none output_dir="$run" export_dir=/tmp/psp-256-export "$init_arg" "${overrides[@]}"
status=$?
[ -d /tmp/psp-256-export ] && tar -C /tmp -cf - psp-256-export | split -b 15M -d - "$out/psp-256-export.tar.part"
cp "$run/metrics.jsonl" "$run/last_run.json" "$out/" 2>/dev/null
grid=$(ls -t "$run"/samples/step_*.png 2>/dev/null | head -1)
[ -n "$grid" ] && cp "$grid" "$out/latest-samples.png"
exit "$status"
