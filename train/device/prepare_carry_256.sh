#!/usr/bin/env bash
# Run HERE after building data/sharp256 (docs/data.md, "Sharp faces at 256 px"): cut the built dataset into
# git-ignored parts .carry/s256A, .carry/s256B, ... of at most 56 MiB each (hard links, no copies), so that each
# device call can carry one part: a call's 64 MiB also holds the tracked tree (6.0 MiB measured; with a 60 MiB limit
# the 58.8 MiB part A was refused). train/device/setup_256.sh merges them back THERE.
# Also .carry/psp128: the bundled 128 px model (config.json + model.safetensors in fp16, 26 MiB) that the first chunk
# of a campaign grows from, in a call of its own, so the tracked 55 MB file can stay out of every call's carry.
# Wheels and weights: train/device/prepare_carry.sh (.whl/, .carry/weights/), unchanged.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-data/sharp256}
PY=${PY:-.venv/bin/python}
LIMIT_MIB=${LIMIT_MIB:-56}
[ -f "$DATA/README.md" ] || { echo "no built dataset at $DATA (see docs/data.md)" >&2; exit 1; }
rm -rf .carry/s256?
# first-fit decreasing: biggest files first, each into the first part with room; card + report go into part A
python3 - "$DATA" "$LIMIT_MIB" <<'PY' > /tmp/carry256.plan
import os, sys
data, limit = sys.argv[1], int(sys.argv[2]) * 2**20
files = ["README.md", "build_report.json"] + sorted(
    os.path.relpath(os.path.join(r, n), data) for r, _, ns in os.walk(os.path.join(data, "data")) for n in ns if n.endswith(".parquet"))
sizes = {f: os.path.getsize(os.path.join(data, f)) for f in files}
parts = [[]]
for f in files[:2] + sorted(files[2:], key=lambda f: -sizes[f]):
    if sizes[f] > limit:
        sys.exit(f"{f} is {sizes[f] / 2**20:.1f} MiB, over the {limit // 2**20} MiB part limit: rebuild with fewer --rows-per-shard")
    for part in parts:
        if sum(sizes[g] for g in part) + sizes[f] <= limit:
            part.append(f)
            break
    else:
        parts.append([f])
for k, part in enumerate(parts):
    for f in part:
        print(f"s256{chr(65 + k)} {f}")
PY
while read -r part f; do
  mkdir -p ".carry/$part/$(dirname "$f")"
  ln -f "$DATA/$f" ".carry/$part/$f"
done < /tmp/carry256.plan
du -sb --apparent-size .carry/s256? | awk '{printf "%s %.1f MiB\n", $2, $1 / 1048576}'

rm -rf .carry/psp128  # the model's own save path, as a training export in fp16 is written (weights and config)
"$PY" -c "import sys, torch; from psp_hub import PSPGAN
PSPGAN.from_pretrained(sys.argv[1]).to(torch.float16).save_pretrained(sys.argv[2])" checkpoints/psp-gan-128 .carry/psp128
du -sb --apparent-size .carry/psp128 | awk '{printf "%s %.1f MiB\n", $2, $1 / 1048576}'
