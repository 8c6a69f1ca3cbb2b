#!/usr/bin/env bash
# Run THERE after `source train/device/setup.sh`, with .baseline carried (compare_speed.sh says how to make it):
# the training step of this tree against the baseline's for prior-128, psp-128, prior-256 and psp-256, on real faces
# through each tree's own loader (baseline: streaming DataLoader; this tree: what the config says), then one table
# with the ratios. Four pairs of ~20 timed steps; each pair is capped at LIMIT s (default 120): under 9 minutes.
#   bash train/device/speed_all.sh            -> $OUT/{old,new}-<config>.json and the table on stdout
# The baseline has no 256 px configs: its 256 px runs are its 128 px configs at out_size 256 (and the batch the speed
# issue measured). Without data/sharp256 here, both trees read data/psp-faces128 at 256 px (real faces, upscaled by
# the loaders; the table says so), not random batches.
set -uo pipefail
cd "$(dirname "$0")/../.."
export OUT=${OUT:-/tmp} LIMIT=${LIMIT:-120}
d128=data/psp-faces128
# native: upscaled 128 px faces never reach psp-256's sharp_threshold (224), so without data/sharp256 all count native
if [ -f data/sharp256/README.md ]; then d256=data/sharp256 native=""; else d256=$d128 native="data.sharp_threshold=0"; fi
echo "256 px data: $d256"
B=.baseline/train/configs
at256="model.out_size=256 data.out_size=256"
init=""  # prior-256 warm-starts from the 128 px prior's export; without one here, from scratch (the same speed)
[ -f runs/prior-128/export/prior_ema.safetensors ] || init="init_from=null"
NAME=prior-128 NEW="--config train/configs/prior-128.yaml data.path=$d128" \
  OLD="--config $B/prior-128.yaml data.path=$d128" bash train/device/compare_speed.sh
NAME=psp-128 NEW="--config train/configs/psp-128.yaml prior_path=null data.path=$d128" \
  OLD="--config $B/psp-128.yaml prior_path=null data.path=$d128" bash train/device/compare_speed.sh
NAME=prior-256 NEW="--config train/configs/prior-256.yaml data.path=$d256 $init" \
  OLD="--config $B/prior-128.yaml $at256 batch_size=64 data.path=$d256" bash train/device/compare_speed.sh
NAME=psp-256 NEW="--config train/configs/psp-256.yaml init_from=null prior_path=null data.extra_path=null data.extra_fraction=0 data.path=$d256 $native" \
  OLD="--config $B/psp-128.yaml $at256 batch_size=32 prior_path=null data.path=$d256" bash train/device/compare_speed.sh
"${PYTHON:-python3}" train/device/run_speed.py --table "$OUT" --note "256 px data: $d256"
