#!/usr/bin/env bash
# Run THERE, at the start of each device call (source it): install the carried wheels once per machine,
# merge the carried dataset parts into data/psp-faces128, and point the package at the carried weights.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if [ ! -f /tmp/site/.done ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && touch /tmp/site/.done
fi
for part in .carry/ds?; do [ -d "$part" ] && cp -alf "$part/." data/psp-faces128/ 2>/dev/null || { mkdir -p data/psp-faces128 && cp -alf "$part/." data/psp-faces128/; }; done
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export PSP_WEIGHTS_DIR=$PWD/.carry/weights
[ -f /tmp/site/.done ] || echo "WARNING: wheels not installed yet (carry .whl)"
ls data/psp-faces128/data/train 2>/dev/null | wc -l | xargs echo "train shards here:"
