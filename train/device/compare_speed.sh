#!/usr/bin/env bash
# Run THERE after `source train/device/setup.sh`: one config's training step in this tree against an earlier commit's,
# on the same GPU in the same call. Both build and warm up side by side, then time one after the other (this tree
# first), so neither is timed while the other starts. Results: $OUT/new-$NAME.json, $OUT/old-$NAME.json (+ .err).
# Here, first (the baseline brings its own package, configs and benchmark script), then carry .baseline:
#   rm -rf .baseline && mkdir .baseline && git archive REV psp_hub train/configs benchmarks/train_speed.py | tar -x -C .baseline
# Prints both sides' row and the ratio of their samples/s (run_speed.py --table).
# Then: NAME=psp-128 NEW="--config train/configs/psp-128.yaml" OLD="--config .baseline/train/configs/psp-128.yaml" \
#         bash train/device/compare_speed.sh [key=value ...]       (overrides for both sides; put one side's in NEW/OLD)
# NEW_ENV / OLD_ENV: VAR=value words for one side's environment, e.g. an inductor setting against the same tree
# without it: BASELINE=. NEW_ENV="TORCHINDUCTOR_CPP_WRAPPER=1" NEW="--config X ..." OLD="--config X ..."
# SERIAL=1: this tree's side compiles and times first, alone, then the other, with one inductor cache: where one
# side's graphs include the other's (compile_r1=true against false) the second loads them, so the pair's cold
# compile costs about one side's (side by side, prior-256's pair ran past 420 s on the H200).
# LIMIT caps each side's seconds; OLD_LIMIT, if set, the other side's (with SERIAL=1 the first side needs the most).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp}
py=${PYTHON:-python3}
base=${BASELINE:-.baseline}
name=${NAME:-psp-512}
limit=${LIMIT:-240}
old_limit=${OLD_LIMIT:-$limit}
NEW=${NEW:-"--config train/configs/psp-512.yaml --synthetic prior_path=null compile=true"}
OLD=${OLD:-"--config .baseline/train/configs/psp-512.yaml --synthetic prior_path=null compile=true"}
sig=${TMPDIR:-/tmp}/speed-$name
rm -f "$sig".*
args=(--steps "${STEPS:-20}" --warmup "${WARMUP:-3}" --profile "${PROFILE:-3}")
cache_new=/tmp/ic-new cache_old=/tmp/ic-old
[ "${SERIAL:-0}" = 1 ] && cache_old=$cache_new
old_side() {  # old_side [train_speed.py options]
  # shellcheck disable=SC2086  # OLD and OLD_ENV are word lists
  env ${OLD_ENV:-} TORCHINDUCTOR_CACHE_DIR=$cache_old timeout "$old_limit" "$py" "$base/benchmarks/train_speed.py" \
    "${args[@]}" $OLD "$@" >"$out/old-$name.json" 2>"$out/old-$name.err"
}
new_side() {
  # shellcheck disable=SC2086
  env ${NEW_ENV:-} TORCHINDUCTOR_CACHE_DIR=$cache_new timeout "$limit" "$py" benchmarks/train_speed.py \
    "${args[@]}" --count-syncs $NEW "$@" >"$out/new-$name.json" 2>"$out/new-$name.err"
}
if [ "${SERIAL:-0}" = 1 ]; then
  new_side "$@"
  old_side "$@"
else
  ( old_side --ready "$sig.old.ready" --wait-for "$sig.new.done" "$@"; touch "$sig.old.ready" "$sig.old.done" ) &
  ( new_side --ready "$sig.new.ready" --wait-for "$sig.old.ready" --done "$sig.new.done" "$@"; touch "$sig.new.done" )
  wait
fi
grep -H "hit config\|Traceback\|Error" "$out/new-$name.err" "$out/old-$name.err" | tail -6 || true  # what failed, if anything
"$py" train/device/run_speed.py --table "$out" --configs "$name"  # both sides and new / old samples/s
