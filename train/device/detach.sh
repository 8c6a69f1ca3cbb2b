#!/usr/bin/env bash
# Run THERE: start a job in its own process session so it outlives the device call that started it (the tool
# ends a call's processes, but not a new session's), while later calls carry more data or wait for it.
#   bash train/device/detach.sh NAME 'command ...'     log: runs/NAME.out, exit status: runs/NAME.rc when done
#   bash train/device/detach.sh --wait NAME SECONDS    wait until runs/NAME.rc exists (or SECONDS pass); print it
set -uo pipefail
cd "$(dirname "$0")/../.."
mkdir -p runs
if [ "$1" = "--wait" ]; then
  name=$2; limit=$3; waited=0
  while [ ! -f "runs/$name.rc" ] && [ "$waited" -lt "$limit" ]; do sleep 5; waited=$((waited + 5)); done
  if [ -f "runs/$name.rc" ]; then echo "== $name finished, exit $(cat "runs/$name.rc") (waited ${waited}s)"
  else echo "== $name still running after ${waited}s"; fi
  tail -c "${TAIL_BYTES:-4000}" "runs/$name.out"
  exit 0
fi
name=$1; cmd=$2
rm -f "runs/$name.rc"
setsid nohup bash -c "$cmd; echo \$? > runs/$name.rc" >"runs/$name.out" 2>&1 </dev/null &
echo "started $name (pid $!): $cmd"
