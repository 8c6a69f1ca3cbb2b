# Sourced THERE by compile_check.sh, psp256_round.sh and return_compile_cache.sh: torch's compiled graphs
# (training/compile_cache.py's mega-cache file) carried between sessions as gzip parts the device tool moves.
# A warm machine keeps the live file runs/compile-cache/<name>.bin between calls; a fresh one rebuilds it once from
# the carried parts <name>.bin.gz.part-* (checked against <name>.bin.sha256). The psp-256 file was 317 MiB on the
# H200 (15 inductor graphs, 696 autotune entries), over the 64 MiB a call returns, so it comes back gzipped in
# 14 MiB parts (the device returns no file over ~15 MB), four parts a call. A carried folder replaces its namesake
# there, so each call's parts travel in a folder of their own, all named from COMPILE_CACHE: here, after the call
# that returned parts FIRST.. (0, 4, 8, ...):
#   mkdir -p .carry/compile-cache-FIRST && cp <files_at>/compile-cache/psp-256.bin.* .carry/compile-cache-FIRST/
# and next session carry .carry/compile-cache-0, .carry/compile-cache-4, ... in calls of their own, then run with
# COMPILE_CACHE=.carry/compile-cache (that folder and every .carry/compile-cache-N are read, parts in part order).
CACHE_PARTS_PER_CALL=4

carried_cache() {  # NAME: the --compile-cache arguments of a compiled process (none without COMPILE_CACHE)
  [ -n "${COMPILE_CACHE:-}" ] || return 0
  local live=runs/compile-cache/$1.bin parts sum
  mkdir -p runs/compile-cache
  if [ ! -f "$live" ]; then  # the carried parts, once per machine: $COMPILE_CACHE and $COMPILE_CACHE-N, by part name
    local where=(-H "$(dirname "$COMPILE_CACHE")" "(" -path "$COMPILE_CACHE/*" -o -path "$COMPILE_CACHE-[0-9]*/*" ")")
    mapfile -t parts < <(find "${where[@]}" -name "$1.bin.gz.part-*" 2>/dev/null |
      awk -F/ '{print $NF "\t" $0}' | sort -u -t $'\t' -k1,1 | cut -f2)
    sum=$(find "${where[@]}" -name "$1.bin.sha256" 2>/dev/null | head -1)
    [ -z "$sum" ] || sum=$(readlink -f "$sum")
    if ((${#parts[@]})); then
      cat "${parts[@]}" | gzip -dc >"$live.tmp" && mv "$live.tmp" "$live"
      if [ -z "$sum" ] || ! (cd runs/compile-cache && sha256sum -c "$sum") >&2; then
        echo "compile cache $1: the ${#parts[@]} carried parts are incomplete or do not match: compiling cold" >&2
        rm -f "$live" "$live.tmp"
      fi
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
