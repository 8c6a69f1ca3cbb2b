#!/usr/bin/env bash
# Run THERE on 2 GPUs after `source train/device/setup.sh` (whole dataset merged, the bundled model in the tree):
# the fine-tune of the bundled model with references made necessary (train/configs/psp-128-refs.yaml),
# data-parallel over both GPUs (batch 16 per GPU, 32 a step) for a fixed time, then the EMA export.
#   bash train/device/refs_ft_ddp.sh MAX_STEPS MINUTES [train.py options] [key=value ...]
set -uo pipefail
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # no NVLink multicast (KINDS.md)
steps=$1; minutes=$2; shift 2
name=${NAME:-refs-ft-ddp}
accelerate launch --multi_gpu --num_processes "${GPUS:-2}" --num_machines 1 --mixed_precision bf16 --dynamo_backend no \
  train/train.py --config train/configs/psp-128-refs.yaml --max-minutes "$minutes" --export "$@" \
  init_from=checkpoints/psp-gan-128 prior_path=null max_steps="$steps" output_dir="runs/$name" \
  export_dir="/tmp/export/$name" data.num_workers="${WORKERS:-14}" tracker=none validate_every=0 images_every=250
