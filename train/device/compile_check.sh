#!/usr/bin/env bash
# Run THERE after `source train/device/setup_256.sh`: does `compile=true` train prior-256 and psp-256 on the device's
# torch, and what does it buy? For each config in CONFIGS, eager and compiled build and warm up side by side (the
# compile is host work), then the compiled step is timed, then the eager one: 16 timed steps (one whole R1 cycle, so
# the mean holds one eager R1 step as training does), real faces through the resident loader. The warm-up is at least
# 3 steps and goes on by whole R1 cycles while the compiled step still compiles graphs (benchmarks/train_speed.py);
# `compiles`/`compile_s` are all compilation, `timed_compiles` any left in the timed window (shown in the table: then
# only the median is a steady step). psp-256 starts from scratch (init_from=null: the bundled checkpoint is not
# carried; the step costs the same). Then, unless REPRO=0, the compiled
# prior step once more with inductor's mix-order reduction forced on (TORCHINDUCTOR_MIX_ORDER_REDUCTION=1): on torch
# 2.11 it should fail in its first backward with the "invalid gradient ... got [256] but expected shape compatible
# with [1, 256, 1, 1]" that training now avoids.
# Limits per compiled process (eager, timed last, gets 30 s more): LIMIT_PRIOR 420 s (the H200 with torch 2.11 took
# 256 s of warm-up, 198 s of it the first step, and compiled ~40 s more in the old timed window); LIMIT_PSP 540 s
# (never measured: its graphs are larger, see docs/speed.md, so one device call of its own); LIMIT_REPRO 75 s.
# One device call (10 minutes) each:
#   CONFIGS=prior-256 bash train/device/compile_check.sh          # <= 450 s, + 75 s with the repro (REPRO=0: none)
#   CONFIGS=psp-256 REPRO=0 bash train/device/compile_check.sh    # <= 570 s
# Both in one call (CONFIGS="prior-256 psp-256", the default) can run past 10 minutes.
# The compiled process writes a line per compilation to its .err as it starts and ends (and TORCH_LOGS, default
# recompiles,graph_breaks), so a run killed in its warm-up shows how far it got. Its inductor cache is
# $INDUCTOR_CACHE/ic-<config> (default /tmp: a fresh compile each machine); INDUCTOR_CACHE=runs/inductor-cache keeps
# it in the repo's ignored runs/, which the device keeps between calls on a warm machine, so a second call finds the
# graphs the first one compiled (psp-256's step: 15 graphs of 9,203 operators, 2.7x the prior's; docs/speed.md).
# COMPILE_CACHE=.carry/compile-cache carries the compiled graphs from session to session (torch's mega-cache,
# training/compile_cache.py): the compiled process uses runs/compile-cache/<config>.bin (kept between calls on a warm
# machine), built first from the carried parts $COMPILE_CACHE/<config>.bin.gz.part-* when it is not there yet; it is
# saved after every compilation (a process killed by its limit keeps what it finished) and comes back gzipped in
# parts of 14 MiB, four a call (psp-256's file was 317 MiB on the H200): $OUT/compile-cache/<config>.bin.gz.part-NN
# + .sha256; the rest with `bash train/device/return_compile_cache.sh <config> 4` (8, ...) in calls of their own.
# To carry them into the next session, keep each call's parts in a folder of their own (compile_cache_parts.sh
# reassembles them there from .carry/compile-cache and .carry/compile-cache-N; a carried folder replaces its namesake):
#   mkdir -p .carry/compile-cache-FIRST && cp <files_at>/compile-cache/psp-256.bin.* .carry/compile-cache-FIRST/
# and carry them, one folder a call. Reassembled by hand (what the script does, with the same check):
#   cat .carry/compile-cache-*/psp-256.bin.gz.part-* | gzip -dc > psp-256.bin && sha256sum -c .carry/compile-cache-0/psp-256.bin.sha256
# The file is only good for the same torch, Triton, GPU and compiled code, shapes and config: anything else misses
# (the compiled .err's "compile cache:" lines count hits and misses).
#   -> $OUT/{eager,compiled}-<config>.json + .err + .rc, repro-prior-256.*, compile-cache/*, a table
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp}
py=${PYTHON:-python3}
args=(--steps "${STEPS:-16}" --warmup "${WARMUP:-3}")
cache=${INDUCTOR_CACHE:-/tmp}
mkdir -p "$cache"
init=""  # prior-256 warm-starts from a 128 px prior export; without one here, from scratch (the same speed)
[ -f runs/prior-128/export/prior_ema.safetensors ] || init="init_from=null"
"$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"

source train/device/compile_cache_parts.sh  # carried_cache, return_cache

pair() {  # NAME LIMIT config overrides...: eager and compiled side by side, the compiled one timed first
  # (the eager one waits for it after its warm-up, so it gets 30 s more)
  local name=$1 limit=$2
  shift 2
  local sig=${TMPDIR:-/tmp}/compile-check-$name
  local cache_args
  read -ra cache_args <<<"$(carried_cache "$name")"
  rm -f "$sig".*
  ( timeout $((limit + 30)) "$py" benchmarks/train_speed.py "${args[@]}" "$@" compile=false \
      --ready "$sig.eager.ready" --wait-for "$sig.compiled.done" >"$out/eager-$name.json" 2>"$out/eager-$name.err"
    echo $? >"$out/eager-$name.rc"; touch "$sig.eager.ready" ) &
  ( TORCHINDUCTOR_CACHE_DIR=$cache/ic-$name TORCH_LOGS=${TORCH_LOGS:-recompiles,graph_breaks} \
      timeout "$limit" "$py" benchmarks/train_speed.py "${args[@]}" "${cache_args[@]}" "$@" \
      compile=true --ready "$sig.compiled.ready" --wait-for "$sig.eager.ready" --done "$sig.compiled.done" \
      >"$out/compiled-$name.json" 2>"$out/compiled-$name.err"
    echo $? >"$out/compiled-$name.rc"; touch "$sig.compiled.done" )
  wait
  [ -z "${COMPILE_CACHE:-}" ] || return_cache "$name"
}

rm -f "$out"/eager-p*-256.* "$out"/compiled-p*-256.* "$out"/repro-prior-256.*  # no stale rows in the table
configs=" ${CONFIGS:-prior-256 psp-256} "
t0=$(date +%s)
[[ $configs == *" prior-256 "* ]] &&
  pair prior-256 "${LIMIT_PRIOR:-420}" --config train/configs/prior-256.yaml data.path=data/sharp256 $init
[[ $configs == *" psp-256 "* ]] &&
  pair psp-256 "${LIMIT_PSP:-540}" --config train/configs/psp-256.yaml data.path=data/sharp256 init_from=null \
    prior_path=null
if [ "${REPRO:-1}" != 0 ]; then
  TORCHINDUCTOR_MIX_ORDER_REDUCTION=1 TORCHINDUCTOR_CACHE_DIR=/tmp/ic-repro timeout "${LIMIT_REPRO:-75}" "$py" \
    benchmarks/train_speed.py --steps 1 --warmup 1 --max-warmup 1 --config train/configs/prior-256.yaml \
    data.path=data/sharp256 $init compile=true >"$out/repro-prior-256.json" 2>"$out/repro-prior-256.err"
  echo $? >"$out/repro-prior-256.rc"
fi
echo "wall $(( $(date +%s) - t0 )) s"

"$py" - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
keys = ("samples_per_s", "ms_per_step_median", "compile_s", "compiles", "warmup_steps", "timed_compiles",
        "first_step_s", "peak_mem_GiB")
print("| config | mode | exit | samples/s | ms/step | compile s | compiles | warm-up steps | compiles timed "
      "| first step s | peak GiB |")
print("|" + " --- |" * 11)
for name in ("prior-256", "psp-256", "repro-prior-256"):
    for mode in ("eager", "compiled") if name != "repro-prior-256" else ("mix-order on",):
        stem = f"{mode}-{name}" if name != "repro-prior-256" else name
        rc = (out / f"{stem}.rc").read_text().strip() if (out / f"{stem}.rc").exists() else "-"
        lines = [l for l in (out / f"{stem}.json").read_text().splitlines() if l.startswith("{")] if (out / f"{stem}.json").exists() else []
        r = json.loads(lines[-1]) if lines else {}
        cells = [r.get(k, "") for k in keys]
        print(f"| {name} | {mode} | {rc} | " + " | ".join(str(c) for c in cells) + " |")
        if rc not in ("0", "-"):
            err = (out / f"{stem}.err").read_text().splitlines() if (out / f"{stem}.err").exists() else []
            hits = [l for l in err if "Error" in l or "invalid gradient" in l or "hit config" in l]
            compiles = [l for l in err if l.startswith("compile ")]  # where a killed warm-up was
            print("    ", (hits or compiles or err or ["(no stderr)"])[-1][:300])
        if "compile_cache_counts" in r:  # warm start: fxgraph_miss and aot_miss 0
            print(f"     compile cache: {r['compile_cache_MiB']} MiB,", r["compile_cache_counts"])
        if r.get("timed_compiles"):
            print("     compiled in the timed window:", r.get("timed_compile_events"))
EOF
