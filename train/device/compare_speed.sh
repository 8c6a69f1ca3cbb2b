#!/usr/bin/env bash
# Run THERE after `source train/device/setup.sh`: the training step of this tree against an earlier commit's, on the
# same GPU in the same call. Both benchmarks compile side by side (the long part), then time one after the other,
# so neither is timed while the other compiles. Results: $OUT/new.json and $OUT/old.json (stderr next to them).
# Here, first:  rm -rf .baseline && mkdir -p .baseline/benchmarks && git archive REV psp_hub | tar -x -C .baseline \
#               && cp benchmarks/train_speed.py .baseline/benchmarks/      (then carry .baseline)
#   bash train/device/compare_speed.sh [key=value ...]      (default: psp-512, random batches, compile, fused Adam)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp}
rm -f /tmp/new.ready /tmp/old.ready /tmp/new.done /tmp/old.done
args=(--config "${CONFIG:-train/configs/psp-512.yaml}" --synthetic --steps "${STEPS:-32}" --warmup 3 --profile 4)
overrides=(prior_path=null optim.fused=true data.pin_memory=true compile=true "$@")
( TORCHINDUCTOR_CACHE_DIR=/tmp/ic-old timeout 560 python3 .baseline/benchmarks/train_speed.py "${args[@]}" \
    --ready /tmp/old.ready --wait-for /tmp/new.done "${overrides[@]}" >"$out/old.json" 2>"$out/old.err"
  touch /tmp/old.ready /tmp/old.done ) &
( TORCHINDUCTOR_CACHE_DIR=/tmp/ic-new timeout 560 python3 benchmarks/train_speed.py "${args[@]}" \
    --ready /tmp/new.ready --wait-for /tmp/old.ready --done /tmp/new.done "${overrides[@]}" >"$out/new.json" 2>"$out/new.err"
  touch /tmp/new.done )
wait
grep -H "hit config" "$out"/new.err "$out"/old.err  # dynamo fell back to eager somewhere
python3 - "$out/new.json" "$out/old.json" <<'PY'
import json, sys
for path in sys.argv[1:]:
    try:
        d = json.load(open(path))
    except ValueError:
        print(path, "no result (see the .err file)")
        continue
    print(path, {k: v for k, v in d.items() if k != "top_kernels"})
PY
