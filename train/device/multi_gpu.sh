#!/usr/bin/env bash
# Run THERE on a machine with 2 GPUs, after `source train/device/setup.sh`: the DDP check through Accelerate (scaling and resume; docs/history/).
#   bash train/device/multi_gpu.sh scale STEPS [key=value ...]   2 GPUs (DDP), then 1 GPU, same config and schedule
#                                                                 (ONE_GPU_STEPS: stop the 1-GPU run after fewer steps)
#   bash train/device/multi_gpu.sh resume STEPS [key=value ...]  resume the 2-GPU run from its mid checkpoint and
#                                                                 compare the next STEPS steps' losses with the
#                                                                 uninterrupted run; then on one GPU (RESUME_GPUS="2 1")
# Runs go to runs/mg-1gpu and runs/mg-2gpu (per-GPU batch from the config, so 2 GPUs take twice the samples a step).
set -uo pipefail
cd "$(dirname "$0")/../.."
# never use NVLink multicast on the shared hosts (KINDS.md); keep these set for every process we start
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
CONFIG=${CONFIG:-train/configs/psp-512.yaml}
mode=$1; steps=$2; shift 2
mkdir -p runs
common=(tracker=none validate_every=0 images_every=0 log_every=1 data.num_workers="${WORKERS:-12}" prior_path=null)

launch() {  # launch NPROC OUTDIR [train.py options...] -- [overrides...]; the whole log goes to OUTDIR.log
  local nproc=$1 out=$2; shift 2
  local gpus; gpus=$(seq -s, 0 $((nproc - 1)))
  local multi=(); [ "$nproc" -gt 1 ] && multi=(--multi_gpu)
  CUDA_VISIBLE_DEVICES=$gpus accelerate launch "${multi[@]}" --num_processes "$nproc" --num_machines 1 \
    --mixed_precision bf16 --dynamo_backend no train/train.py --config "$CONFIG" "$@" output_dir="$out" \
    export_dir="$out/export" "${common[@]}" >"$out.log" 2>&1
  local rc=$?
  echo "== $out ($nproc GPU, exit $rc)"
  grep -a -E "resumed from|stopped at|DIVERGED|Error|error:" "$out.log" | grep -v -i warn | tail -5
  [ $rc -eq 0 ] || tail -c 3000 "$out.log"
}

case $mode in
  scale)
    rm -rf runs/mg-1gpu runs/mg-2gpu
    nvidia-smi --query-gpu=index,name,memory.total --format=csv; nvidia-smi topo -m
    launch 2 runs/mg-2gpu max_steps="$steps" checkpoint_every=$((steps / 2)) "$@"
    launch 1 runs/mg-1gpu --max-steps-this-run "${ONE_GPU_STEPS:-$steps}" max_steps="$steps" \
      checkpoint_every=$((steps / 2)) "$@"
    # the speed window ends before the final boost of older faces (data.boost_start) restarts the data workers
    python3 train/device/run_speed.py runs/mg-1gpu runs/mg-2gpu --until "${UNTIL:-$((steps * 5 / 6))}"
    ;;
  resume)
    mid=$(ls runs/mg-2gpu/checkpoints | grep -E '^checkpoint-' | sed 's/checkpoint-//' | sort -n | head -1)
    total=$(python3 -c "import json; print(json.load(open('runs/mg-2gpu/config.json'))['max_steps'])")
    for n in ${RESUME_GPUS:-2 1}; do  # copy of the run with only the mid checkpoint, resumed on 2 GPUs, then on 1
      rm -rf "runs/mg-resume$n"; mkdir -p "runs/mg-resume$n/checkpoints"
      cp -r "runs/mg-2gpu/checkpoints/checkpoint-$mid" "runs/mg-resume$n/checkpoints/"
      launch "$n" "runs/mg-resume$n" --resume --max-steps-this-run "$steps" max_steps="$total" \
        checkpoint_every=$((total / 2)) "$@"
    done
    python3 train/device/run_speed.py --compare runs/mg-2gpu runs/mg-resume2
    ;;
  *) echo "usage: $0 scale|resume STEPS [key=value ...]"; exit 2 ;;
esac
