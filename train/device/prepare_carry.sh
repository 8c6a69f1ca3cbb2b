#!/usr/bin/env bash
# Run HERE (the machine with ../shared and internet-free PyPI) before using the GPU device tool.
# Fills the git-ignored folders that device calls name in `carry` (each call carries at most 64 MiB):
#   .whl/               wheels the device image lacks (datasets, diffusers, kornia, onnx2torch, ...)
#   .carry/weights/     the auxiliary networks training needs (VGG-16 features, ArcFace ONNX, LPIPS heads)
#   .carry/dsA..dsD/    the built dataset (data/psp-faces128) cut into parts under 60 MiB, hard-linked
# NO_DATA=1 stops after the wheels and weights: all that `train_speed.py --synthetic` calls need (58 MB).
# SPEED_DATA=1 cuts only .carry/dsS instead: a real-data sample for speed runs (3 of the 14 train shards, one older,
# and the small older shards of validation and test, without which the card fails to load; 23 MiB): with .whl it
# fits one call (the priors); PSP-GAN's .carry/weights follow in the next call on the warm machine. The resident
# loader holds whatever shards are there, so a step costs what it costs on the whole set.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${PSP_SHARED_DIR:-../shared}
DATA=${DATA:-data/psp-faces128}
grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude

mkdir -p .whl
dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$@"; }
dl datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 diffusers==0.42.1 onnx==1.23.2 onnx2torch==1.5.15 \
   protobuf==6.33.1 safetensors==0.8.0 kornia==0.9.0 kornia_rs==0.2.0

mkdir -p .carry/weights
cp "$SHARED"/weights/{vgg16_imagenet_features_fp16.safetensors,mobilefacenet_arcface_112.onnx,lpips_vgg16_v0.1_lin.safetensors} .carry/weights/
if [ "${NO_DATA:-0}" = 1 ]; then du -sh .whl .carry/weights; exit 0; fi

[ -f "$DATA/README.md" ] || python3 train/build_dataset.py --input "$SHARED/data/faces128" --output "$DATA" --seed 0 --workers 2
part() {  # part NAME FILE...: hard-link dataset files (paths relative to $DATA) into .carry/NAME/
  local name=$1; shift
  for f in "$@"; do mkdir -p ".carry/$name/$(dirname "$f")"; ln -f "$DATA/$f" ".carry/$name/$f"; done
}
cd "$DATA"; shopt -s nullglob
A=(README.md build_report.json data/validation/* data/train/older-* data/train/general-0000[01]-*)
B=(data/test/* data/train/general-0000[23]-*)
C=(data/train/general-0000[4-9]-*)
D=(data/train/general-000[1-9][0-9]-*)
S=(README.md build_report.json data/validation/older-* data/test/older-*
   data/train/older-00000-* data/train/general-0000[01]-*)
cd - >/dev/null
if [ "${SPEED_DATA:-0}" = 1 ]; then
  rm -rf .carry/dsS && part dsS "${S[@]}" && du -sh .whl .carry/weights .carry/dsS
  exit 0
fi
rm -rf .carry/ds{A,B,C,D}
part dsA "${A[@]}"; part dsB "${B[@]}"; part dsC "${C[@]}"; part dsD "${D[@]}"
du -sh .whl .carry/weights .carry/ds?
