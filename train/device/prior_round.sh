#!/usr/bin/env bash
# Run THERE after `source train/device/setup.sh` and `source train/device/setup_256.sh` (the sharp 256 px set in
# data/sharp256): one chunk of the 256 px StyleGAN2 prior, exported (EMA) and sent back in 15 MB parts with its
# metrics and latest sample grid. It warm-starts from the config's init_from, a 128 px prior export in
# runs/prior-128/export (train/configs/prior-128.yaml trained on the same machine first), or from nothing with
# init_from=null. Round 1's warm start, the decoder inside the bundled PSP-GAN 128 (.carry/prior128, made here by
# bash train/device/prepare_prior128.sh, read with init_from=checkpoints/psp-gan-128), collapsed to one head.
#   bash train/device/prior_round.sh MINUTES [--resume] [key=value ...]
set -uo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-8}
shift
out=${OUT:-/tmp/out}
mkdir -p "$out" checkpoints/psp-gan-128
if [ -f .carry/prior128/prior_ema.safetensors ]; then  # only for init_from=checkpoints/psp-gan-128
  cp .carry/prior128/prior_ema.safetensors checkpoints/psp-gan-128/
fi
python3 train/train.py --config train/configs/prior-256.yaml --max-minutes "$minutes" --export tracker=none \
    images_every=500 export_dir=/tmp/prior-256-export "$@"
status=$?
[ -d /tmp/prior-256-export ] && tar -C /tmp -cf - prior-256-export | split -b 15M -d - "$out/prior-256-export.tar.part"
cp runs/prior-256/metrics.jsonl "$out/" 2>/dev/null
grid=$(ls -t runs/prior-256/*/step_*.png 2>/dev/null | head -1)
[ -n "$grid" ] && cp "$grid" "$out/latest-samples.png"
exit "$status"
