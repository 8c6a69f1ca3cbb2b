#!/usr/bin/env bash
# Run THERE, in calls of their own after a session's last compiled chunk (its export and hand-over fill that call's
# 64 MiB): the machine's compile cache comes back in $OUT/compile-cache, gzipped, four 14 MiB parts a call, with its
# .sha256; each call prints the next one's command (FIRST: the first part this call returns, 0 at the start).
#   bash train/device/return_compile_cache.sh psp-256 [FIRST]
# Here, after each call (a folder per call: a carried folder replaces its namesake there; compile_cache_parts.sh):
#   mkdir -p .carry/compile-cache-FIRST && cp <files_at>/compile-cache/psp-256.bin.* .carry/compile-cache-FIRST/
set -euo pipefail
cd "$(dirname "$0")/../.."
source train/device/compile_cache_parts.sh
return_cache "${1:-psp-256}" "${OUT:-/tmp/out}" "${2:-0}"
