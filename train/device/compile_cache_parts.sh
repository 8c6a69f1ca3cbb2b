# Sourced THERE by compile_check.sh, psp256_round.sh and return_compile_cache.sh: torch's compiled graphs
# (training/compile_cache.py's mega-cache file) carried between sessions as gzip parts the device tool moves.
# A warm machine keeps the live file runs/compile-cache/<name>.bin between calls; a fresh one rebuilds it once from
# the carried parts $COMPILE_CACHE/<name>.bin.gz.part-* (checked against <name>.bin.sha256). The psp-256 file was
# 317 MiB on the H200 (15 inductor graphs, 696 autotune entries), over the 64 MiB a call returns, so it comes back
# gzipped in 14 MiB parts (the device returns no file over ~15 MB), four parts a call. Here, keep them all:
#   mkdir -p .carry/compile-cache && cp <files_at>/compile-cache/psp-256.bin.* .carry/compile-cache/
# and carry the parts (up to 64 MiB a call; parts carried by earlier calls on the same warm machine stay there).
CACHE_PARTS_PER_CALL=4

carried_cache() {  # NAME: the --compile-cache arguments of a compiled process (none without COMPILE_CACHE)
  [ -n "${COMPILE_CACHE:-}" ] || return 0
  local live=runs/compile-cache/$1.bin parts=("$COMPILE_CACHE/$1.bin.gz.part-"*)
  mkdir -p runs/compile-cache
  if [ ! -f "$live" ] && [ -f "${parts[0]}" ]; then  # the carried parts, once per machine
    local sum
    sum=$(readlink -f "$COMPILE_CACHE/$1.bin.sha256")
    cat "${parts[@]}" | gzip -dc >"$live.tmp" && mv "$live.tmp" "$live"
    if [ ! -f "$sum" ] || ! (cd runs/compile-cache && sha256sum -c "$sum") >&2; then
      echo "compile cache $1: the carried parts are incomplete or do not match $sum: compiling cold" >&2
      rm -f "$live" "$live.tmp"
    fi
  fi
  echo --compile-cache "$live"
}

return_cache() {  # NAME [OUT] [FIRST]: parts FIRST.. (four, one call's worth) of the gzipped live file in OUT/compile-cache
  local live=runs/compile-cache/$1.bin dest=${2:-$out}/compile-cache first=${3:-0}
  local staged=runs/compile-cache/$1.parts
  [ -f "$live" ] || { echo "compile cache $1: none on this machine" >&2; return 0; }
  if [ ! -f "$staged/$1.bin.sha256" ] || [ "$live" -nt "$staged/$1.bin.sha256" ]; then  # split once per cache file
    rm -rf "$staged" && mkdir -p "$staged"
    gzip -1c "$live" | split -b 14M -d -a 2 - "$staged/$1.bin.gz.part-"
    (cd runs/compile-cache && sha256sum "$1.bin") >"$staged/$1.bin.sha256"
  fi
  local parts=("$staged/$1.bin.gz.part-"*) n i
  n=${#parts[@]}
  mkdir -p "$dest" && rm -f "$dest/$1.bin".*
  cp "$staged/$1.bin.sha256" "$dest/"
  for ((i = first; i < first + CACHE_PARTS_PER_CALL && i < n; i++)); do cp "${parts[$i]}" "$dest/"; done
  if ((first >= n)); then echo "compile cache $1: only $n parts, none left from $first" >&2; return 0; fi
  echo "compile cache $1: $(($(stat -c %s "$live") / 1048576)) MiB, gzipped in $n parts; this call returns parts" \
    "$first..$((i - 1))"
  if ((i < n)); then echo "compile cache $1: next call: bash train/device/return_compile_cache.sh $1 $i"; fi
}
