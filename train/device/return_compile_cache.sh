#!/usr/bin/env bash
# Run THERE, in a call of its own after a session's last compiled chunk (its export and hand-over fill that call's
# 64 MiB): the machine's compile cache comes back in $OUT/compile-cache in 14 MiB parts with its .sha256.
#   bash train/device/return_compile_cache.sh psp-256
# Here: mkdir -p .carry/compile-cache && cp <files_at>/compile-cache/psp-256.bin.* .carry/compile-cache/
set -euo pipefail
cd "$(dirname "$0")/../.."
source train/device/compile_cache_parts.sh
return_cache "${1:-psp-256}" "${OUT:-/tmp/out}"
