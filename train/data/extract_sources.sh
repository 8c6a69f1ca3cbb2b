#!/usr/bin/env bash
# Copy the photos of the six public face repositories behind data/sharp256 out of their git mirrors into the
# git-ignored data/raw/<source>/ (never committed). Mirrors: `fetch github:<owner>/<name>` puts them under
# /work/.mirror/<owner>+<name>/repo (DEVELOPERS.md); MIRROR overrides that root. Idempotent: reruns overwrite.
#   london/       webmorphR.stim inst/{neutral,smiling}_front/*.jpg + data-raw/london_info.csv + LICENSE.md
#   celeba/       faceRecognition Celeb/*.jpg + identity_CelebA.txt (the shared corpus' CelebA photos)
#   scut/         SCUT-FBP5500_v2/Images/A*.jpg (Asian faces; the C* ones are upsampled + oval-masked: left out)
#   mebeauty/     MEBeauty original_images/{female,male}/
#   celebahq/     InterfaceGAN Fake_Dataset/*/Real_Faces/*.jpg (CelebA-HQ real photos)
#   asian_faces/  Asian_faces sample_*/<person>/ folders
set -euo pipefail
cd "$(dirname "$0")/../.."
MIRROR=${MIRROR:-/work/.mirror}
RAW=${RAW:-data/raw}
PY=${PY:-.venv/bin/python}
git_dir() { echo "$MIRROR/${1/\//+}/repo"; }
export_paths() {  # export_paths OWNER/NAME DEST [--match REGEX] PATH...: files at HEAD, folder layout kept
  local repo dest; repo=$(git_dir "$1"); dest=$2; shift 2
  "$PY" train/data/git_export.py "$repo" "$dest" "$@"
}
rm -rf "$RAW/london" "$RAW/celeba" "$RAW/scut" "$RAW/mebeauty" "$RAW/celebahq" "$RAW/asian_faces"

export_paths debruine/webmorphR.stim "$RAW/london" --match '(\.jpg|\.csv|\.md)$' inst/neutral_front inst/smiling_front data-raw/london_info.csv LICENSE.md
find "$RAW/london" -name '._*' -delete  # macOS resource forks
export_paths matush97/faceRecognition "$RAW/celeba" Celeb identity_CelebA.txt
# keep the CelebA photos whose face spans >= 256 source px (the shared corpus measured it: crop_px_in_source);
# the builder checks it again (min_native_px 256 in train/data/sharp256.yaml), this only saves detection time
"$PY" - "$RAW/celeba/Celeb" "${SHARED:-../shared}/data/faces128/metadata.csv" <<'PYEOF'
import csv, pathlib, sys
folder, meta = pathlib.Path(sys.argv[1]), sys.argv[2]
keep = {r["origin"].rsplit("/", 1)[-1] for r in csv.DictReader(open(meta)) if r["source"] == "celeba" and int(r["crop_px_in_source"]) >= 256}
gone = [p.unlink() for p in folder.iterdir() if p.name not in keep]
print(f"{folder}: kept {len(keep)} photos with a face >= 256 px, removed {len(gone)}")
PYEOF
export_paths qijialiv-cell/SCUT-FBP5500-Beauty-Score "$RAW/scut" --match '(Images/A[^/]*\.jpg|README\.txt)$' SCUT-FBP5500_v2/Images SCUT-FBP5500_v2/README.txt
export_paths fbplab/MEBeauty-database "$RAW/mebeauty" original_images README.md
export_paths santaz-sahithi/InterfaceGAN "$RAW/celebahq" --match '(/Real_Faces/|^LICENSE$)' Fake_Dataset LICENSE
# Real_Faces also holds ~830 small (112-116 px) crops; only the 200 CelebA-HQ 1024 px photos are kept
"$PY" - "$RAW/celebahq" <<'PYEOF'
import pathlib, sys
from PIL import Image
small = [p for p in pathlib.Path(sys.argv[1]).rglob("*.jpg") if min(Image.open(p).size) < 1024]
for p in small:
    p.unlink()
print(f"{sys.argv[1]}: removed {len(small)} photos under 1024 px")
PYEOF
export_paths nz0001na/Asian_faces "$RAW/asian_faces" --match '^(sample_[^/]+/[^/]+/|README\.md$)' .

for d in london celeba scut mebeauty celebahq asian_faces; do
  printf '%-12s %6d images\n' "$d" "$(find "$RAW/$d" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | wc -l)"
done
