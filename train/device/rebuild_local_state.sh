#!/usr/bin/env bash
# Run HERE on a machine that lost its git-ignored folders (a new checkout, an environment restart): rebuilds, in
# order, everything the device calls of the 256 px campaign carry, from ../shared and the six git mirrors.
#   bash train/device/rebuild_local_state.sh
# Before it, once per machine, the six repositories named in docs/data.md ("Sharp faces at 256 px") must be fetched
# with the search tool's fetch (github:debruine/webmorphR.stim, ...); the script names any that are missing.
# Steps (each skipped when its output is there; measured times in docs/data.md and train/device/README.md):
#   1. make install                         .venv
#   2. train/data/extract_sources.sh        data/raw/<source>/       (seconds)
#   3. build data/sharp256                   RetinaFace on ~10k photos (the long step: tens of minutes on 2 cores)
#   4. train/device/prepare_carry.sh        data/psp-faces128 (built there when missing, under a minute), .whl,
#                                            .carry/weights, .carry/dsA..D
#   5. train/device/prepare_carry_256.sh    .carry/s256A..C, .carry/psp128
# What cannot be rebuilt: a run's exports and hand-overs (runs/, .carry/rN). Without them a campaign restarts from
# the bundled 128 px model (docs/release-model.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PSP_SHARED_DIR=${PSP_SHARED_DIR:-../shared}
MIRROR=${MIRROR:-/work/.mirror}
REPOS="debruine/webmorphR.stim matush97/faceRecognition qijialiv-cell/SCUT-FBP5500-Beauty-Score
  fbplab/MEBeauty-database santaz-sahithi/InterfaceGAN nz0001na/Asian_faces"
missing=""
for repo in $REPOS; do
  [ -d "$MIRROR/${repo/\//+}/repo" ] || missing="$missing github:$repo"
done
[ -z "$missing" ] || { echo "fetch these first (search tool's fetch):$missing" >&2; exit 1; }

step() { echo "== $(date +%H:%M:%S) $*"; }
step "1/5 virtual environment"; make install
export PATH="$PWD/.venv/bin:$PATH"  # the prepare scripts call python3
step "2/5 photos out of the mirrors"; SHARED=$PSP_SHARED_DIR bash train/data/extract_sources.sh
step "3/5 data/sharp256"
[ -f data/sharp256/README.md ] ||
  nice -n 10 python train/build_dataset.py --sources train/data/sharp256.yaml --output data/sharp256 --size 256 \
    --image-format webp --min-native-px 160 --workers 2 --seed 0 --pretty-name "PSP-GAN sharp faces 256"
step "4/5 the 128 px corpus, wheels, weights, corpus parts"; bash train/device/prepare_carry.sh
step "5/5 sharp-set parts, the bundled model in fp16"; bash train/device/prepare_carry_256.sh
step "done"
