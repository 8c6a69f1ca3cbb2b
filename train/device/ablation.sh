#!/usr/bin/env bash
# Run THERE after `source train/device/setup.sh` and the prior (runs/prior-128/export): the issue-6 ablation.
# The runs train side by side on the one GPU (a 128 px step is bound by kernel launches, so the GPU has room),
# each with its own output folder and the same prior, data, seed and steps; only the named overrides differ.
#   [RUNS="ab-ref ab-inp"] [TAG=-long] [WORKERS=4] bash train/device/ablation.sh MAX_STEPS MINUTES [options] [key=value]
#   (train.py options such as --resume --export first, then overrides common to every run, e.g. prior_path=...)
#     ab-ref       the paper's fusion (Q = reference features), augmented self-views for single-photo people
#     ab-inp       the other direction (Q = input features, K/V = all references' tokens at once)
#     ab-inp-real  ab-inp, but single-photo people get no references (only real other photos are ever used)
#     refs-ft      psp-128-refs (references made necessary), fine-tuning the bundled model
#     refs-scratch psp-128-refs from the prior (pass prior_path=...), the same recipe without the head start
set -uo pipefail
steps=$1; minutes=$2; shift 2
declare -A runs=(
  [ab-ref]="model.fusion_direction=reference_query"
  [ab-inp]="model.fusion_direction=input_query"
  [ab-inp-real]="model.fusion_direction=input_query data.single_photo_refs=none"
  [refs-ft]="init_from=checkpoints/psp-gan-128 prior_path=null"
  [refs-scratch]=""
)
declare -A configs=([refs-ft]=psp-128-refs [refs-scratch]=psp-128-refs)
selected=${RUNS:-"ab-ref ab-inp ab-inp-real"}; tag=${TAG:-}
mkdir -p runs
for name in $selected; do
  [ -n "${runs[$name]+set}" ] || { echo "unknown run $name (known: ${!runs[*]})"; exit 2; }
  # shellcheck disable=SC2086
  python3 train/train.py --config "train/configs/${configs[$name]:-psp-128}.yaml" --max-minutes "$minutes" "$@" max_steps="$steps" \
    output_dir="runs/$name$tag" export_dir="/tmp/export/$name$tag" data.num_workers="${WORKERS:-4}" tracker=none \
    validate_every=0 images_every=0 ${runs[$name]} >>"runs/$name$tag.log" 2>&1 &
done
wait
for name in $selected; do echo "== $name$tag"; grep -a -E "resumed|stopped at|exported|Error|error" "runs/$name$tag.log" | tail -4; done
