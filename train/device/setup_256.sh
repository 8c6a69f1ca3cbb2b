#!/usr/bin/env bash
# Run THERE, at the start of each device call that uses the sharp 256 px set (source it): the usual setup
# (wheels, weights, offline flags: setup.sh), then merge the carried parts .carry/s256A.. into data/sharp256.
# Parts carried by earlier calls on the same warm machine are already merged and stay.
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source train/device/setup.sh
mkdir -p data/sharp256
for part in .carry/s256?; do
  [ -d "$part" ] && cp -alf "$part/." data/sharp256/
done
find data/sharp256/data -name '*.parquet' 2>/dev/null | wc -l | xargs echo "sharp256 shards here:"
[ -f data/sharp256/README.md ] || echo "WARNING: data/sharp256/README.md missing (carry .carry/s256A)"
