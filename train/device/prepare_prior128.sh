#!/usr/bin/env bash
# Run HERE: the StyleGAN2 decoder of the bundled PSP-GAN 128 as a prior export (.carry/prior128/prior_ema.safetensors,
# 25 MB), which the 256 px prior starts from (train/configs/prior-256.yaml: init_from) on the device, where the
# bundled model itself does not fit in a call next to the data.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .carry/prior128
"${PYTHON:-.venv/bin/python}" - <<'PY'
from safetensors.torch import load_file, save_file
from psp_hub.training.warm_start import PSPGAN_DECODER_PREFIX as P
sd = load_file("checkpoints/psp-gan-128/model.safetensors")
save_file({k[len(P):]: v.contiguous() for k, v in sd.items() if k.startswith(P)}, ".carry/prior128/prior_ema.safetensors")
PY
ls -l .carry/prior128
