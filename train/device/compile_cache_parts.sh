# Sourced THERE by compile_check.sh, psp256_round.sh and return_compile_cache.sh: torch's compiled graphs
# (training/compile_cache.py's mega-cache file) carried between sessions as parts the device tool moves.
# A warm machine keeps the live file runs/compile-cache/<name>.bin between calls; a fresh one rebuilds it once from
# the carried parts $COMPILE_CACHE/<name>.bin.part-* (checked against their .sha256). The file comes back in parts
# of 14 MiB (the device returns no file over ~15 MB, 64 MiB a call). Here, keep them for the next session:
#   mkdir -p .carry/compile-cache && cp <files_at>/compile-cache/psp-256.bin.* .carry/compile-cache/
# and carry [".carry/compile-cache"] (the parts only: the whole file too would count twice against the carry).

carried_cache() {  # NAME: the --compile-cache arguments of a compiled process (none without COMPILE_CACHE)
  [ -n "${COMPILE_CACHE:-}" ] || return 0
  local live=runs/compile-cache/$1.bin parts=("$COMPILE_CACHE/$1.bin.part-"*)
  mkdir -p runs/compile-cache
  if [ ! -f "$live" ] && [ -f "${parts[0]}" ]; then  # the carried parts, once per machine
    local sum
    sum=$(readlink -f "$COMPILE_CACHE/$1.bin.sha256")
    cat "${parts[@]}" >"$live.tmp" && mv "$live.tmp" "$live"
    if [ -f "$sum" ] && ! (cd runs/compile-cache && sha256sum -c "$sum") >&2; then
      echo "compile cache $1: the carried parts do not match $sum: compiling cold" >&2
      rm -f "$live"
    fi
  fi
  echo --compile-cache "$live"
}

return_cache() {  # NAME [OUT]: the live file back in OUT/compile-cache (default $out) in parts the device returns
  local live=runs/compile-cache/$1.bin dest=${2:-$out}/compile-cache
  [ -f "$live" ] || { echo "compile cache $1: none on this machine" >&2; return 0; }
  mkdir -p "$dest"
  rm -f "$dest/$1.bin".*
  split -b 14M -d -a 2 "$live" "$dest/$1.bin.part-"
  (cd runs/compile-cache && sha256sum "$1.bin") >"$dest/$1.bin.sha256"
  local n
  n=$(find "$dest" -name "$1.bin.part-*" | wc -l)
  echo "compile cache $1: $(( $(stat -c %s "$live") / 1048576 )) MiB in $n parts (the device returns 64 MiB a call)"
}
