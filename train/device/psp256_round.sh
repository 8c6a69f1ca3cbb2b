#!/usr/bin/env bash
# Run THERE after `source train/device/setup.sh` and `source train/device/setup_256.sh` (data/psp-faces128 and
# data/sharp256 merged from their carried parts): one chunk of PSP-GAN 256 (train/configs/psp-256.yaml). $OUT gets
# the EMA export and the hand-over a fresh machine continues from (training/handover.py: the discriminators in fp16
# and the step, 18.7 MB), each as 15 MB tar parts, and the run's metrics, last_run.json and latest sample grid
# (and profile.json with profile_steps=N: N steps profiled after the run's first 20, training/step_profile.py).
#   bash train/device/psp256_round.sh MINUTES [--resume] [key=value ...]
# Same machine, next chunk: `bash train/device/psp256_round.sh 8.0 --resume` (the checkpoint holds everything).
# First chunk of a campaign: grown from the bundled 128 px model, which reaches the machine once as the tracked
# checkpoints/psp-gan-128/model.safetensors (do not move it aside in that call) or as .carry/psp128 (its config.json
# and model.safetensors); it is kept in /tmp/psp-gan-128 while the machine stays warm.
# Fresh machine, continuing an earlier session's run: unpack its parts HERE into one carry folder (the export comes
# back in fp16, export_dtype=float16: 28 MB + the hand-over's 19 MB fit one call's 64 MiB; the tracked 128 px model,
# 55 MB, must be moved aside in that call):
#   mkdir -p .carry/r7 && for p in psp-256-export psp-256-handover; do cat $p.tar.part* | tar -C .carry/r7 -xf -; done
#   CONTINUE=.carry/r7 bash train/device/psp256_round.sh 8.4 images_every=250     # carry .carry/r7: continues
#   CONTINUE=.carry/r7 bash train/device/psp256_round.sh 8.0 --resume             # later chunks (checkpoint wins)
# What CONTINUE carried is kept in /tmp/psp-256-continue while the machine stays warm; with MINUTES 0 a call only
# stages it there (export and hand-over may then come in separate calls).
# The run goes on at the hand-over's step: warm-up, unet_until, lr decays, R1 cadence and the data stream continue;
# its discriminators load, Adam's moments restart, the EMA starts from the export. A step-only hand-over (no
# discriminators, made HERE for an export that came back without one: `python -m psp_hub.training.make_handover --config
# train/configs/psp-256.yaml --step N --out .carry/r7/psp-256-handover --export .carry/r7/psp-256-export`) starts
# fresh discriminators and a new adversarial warm-up at step N.
# Sharp faces only (no 128 px corpus carried): `data.extra_path=null data.extra_fraction=0`.
# Compiled (compile=true, docs/speed.md): COMPILE_CACHE=.carry/compile-cache trains with torch.compile and keeps its
# graphs in runs/compile-cache/psp-256.bin (train.py --compile-cache), rebuilt from that folder's carried parts on a
# fresh machine (train/device/compile_cache_parts.sh). The first chunk then spends minutes of its MINUTES compiling
# (MINUTES counts them: a cold compile of 348 s with MINUTES 3.0 trained one step; the logged speeds leave the
# compiling out and last_run.json shows compile_s), later chunks on the warm machine load the graphs in seconds. The export and hand-over fill most of a call's 64 MiB, so the cache
# comes back in calls of its own, four gzipped parts each (psp-256's file: 317 MiB, ~6 parts):
# `bash train/device/return_compile_cache.sh psp-256`, then with 4, 8, ... as it prints. On the H200 the cold
# compile took 320 s of the first chunk, a cache-file start 20 s, and compiled chunks ran at 140 samples/s (eager 86).
set -uo pipefail
cd "$(dirname "$0")/../.."
minutes=${1:-8}
shift
out=${OUT:-/tmp/out}
init=${INIT_DIR:-/tmp/psp-gan-128}  # where the 128 px model is kept on the machine
run=${RUN:-runs/psp-256}  # the run's folder (output_dir)
cont=/tmp/psp-256-continue  # what CONTINUE calls carried, gathered across calls
mkdir -p "$out" "$init"
for src in checkpoints/psp-gan-128 .carry/psp128; do
  if [ -f "$src/model.safetensors" ] && [ ! -f "$init/model.safetensors" ]; then
    cp "$src/config.json" "$src/model.safetensors" "$init/"
  fi
done
if [ -n "${CONTINUE:-}" ]; then
  mkdir -p "$cont"
  for part in psp-256-export psp-256-handover; do
    if [ -d "$CONTINUE/$part" ]; then rm -rf "${cont:?}/$part" && cp -r "$CONTINUE/$part" "$cont/"; fi
  done
  if [ "$minutes" = 0 ]; then
    echo "staged in $cont: $(ls "$cont" | tr '\n' ' ')"
    exit 0
  fi
  for want in psp-256-export/model.safetensors psp-256-handover/handover.json; do
    [ -f "$cont/$want" ] || { echo "CONTINUE: no $want (carry it in this call or an earlier one)" >&2; exit 2; }
  done
fi
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
if [ "$resume" = 1 ] && [ -z "${CONTINUE:-}" ] && ! ls -d "$run"/checkpoints/checkpoint-* >/dev/null 2>&1; then
  echo "--resume: no checkpoint in $run on this machine (a fresh one): continue with CONTINUE=<carried hand-over>" >&2
  exit 2
fi
if [ -n "${CONTINUE:-}" ]; then
  init_args=("init_from=$cont/psp-256-export" "continue_from=$cont/psp-256-handover")
elif [ -f "$init/model.safetensors" ]; then
  init_args=("init_from=$init")
elif [ "$resume" = 1 ]; then
  init_args=("init_from=null")  # every weight comes from the checkpoint
else
  echo "no 128 px model here: carry checkpoints/psp-gan-128/model.safetensors or .carry/psp128 in this call" >&2
  exit 2
fi
if [ -n "${COMPILE_CACHE:-}" ]; then
  source train/device/compile_cache_parts.sh
  read -ra cache_args <<<"$(carried_cache psp-256)"
  flags+=("${cache_args[@]}")
  # the losses compiled with the networks: 1.17x the networks compiled alone, and CUDA graphs over those few large
  # calls 2.04x more (H200, synthetic batches: 169.4 -> 345.0 samples/s, docs/speed.md); a later compile=false needs
  # compile_losses=false beside it. A cache file made in the default mode misses under reduce-overhead (the mode is
  # part of inductor's graph key): compile_mode=default after these keeps such a file's graphs.
  overrides=(compile=true compile_losses=true compile_mode=reduce-overhead "${overrides[@]}")
  export TORCH_LOGS=${TORCH_LOGS:-recompiles,graph_breaks}  # a recompile mid-chunk shows in the log (torch fails on an empty one)
fi
rm -rf /tmp/psp-256-export /tmp/psp-256-handover  # what comes back is this chunk's, or nothing
# later key=value arguments win, so a given init_from=... replaces the 128 px model
python3 train/train.py --config train/configs/psp-256.yaml --max-minutes "$minutes" --export "${flags[@]}" \
    tracker=none output_dir="$run" export_dir=/tmp/psp-256-export handover_dir=/tmp/psp-256-handover \
    export_dtype=float16 "${init_args[@]}" "${overrides[@]}"
status=$?
for part in psp-256-export psp-256-handover; do  # 15 MB parts: a file over 15 MB does not come back
  [ -d "/tmp/$part" ] && tar -C /tmp -cf - "$part" | split -b 15M -d - "$out/$part.tar.part"
done
cp "$run/metrics.jsonl" "$run/last_run.json" "$out/" 2>/dev/null
[ -f "$run/profile.json" ] && cp "$run/profile.json" "$out/"  # with profile_steps=N
grid=$(ls -t "$run"/samples/step_*.png 2>/dev/null | head -1)
[ -n "$grid" ] && cp "$grid" "$out/latest-samples.png"
exit "$status"
