#!/usr/bin/env bash
# What the C API costs per request against the C++ interface, each way in a
# process of its own (so that only one copy of the core is in the caches),
# the processes alternating: cxx-spawn and capi, PROCS times each, every
# process running ROUNDS rounds of OPS requests (capi-cost's median of them
# is that process's figure); prints each process's figure, the medians and
# the ratio. Twice: the C API through libcoblk.a (linked like the C++ way:
# the two interfaces over the same code) and through libcoblk.so (what a
# program linked with `pkg-config --libs coblk` runs).
# usage: bench/capi_cost.sh [BUILD_DIR [PROCS [ROUNDS [OPS]]]]
set -euo pipefail
build=${1:-build}
procs=${2:-7}
rounds=${3:-7}
ops=${4:-500000}

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
# One process's median of its rounds: capi-cost prints "ROUND WAY NS".
one() { "$1" "$rounds" "$ops" "$2" | awk '$1 ~ /^[0-9]+$/ && NF == 3 {print $3}' | median; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
for linkage in static shared; do
  bin="$build/bench/capi-cost"
  [ "$linkage" = static ] && bin="$build/bench/capi-cost-static"
  [ -x "$bin" ] || { echo "capi_cost: $bin not built (ninja -C $build)" >&2; exit 2; }
  cxx=() capi=()
  for ((i = 1; i <= procs; i++)); do
    if ((i % 2)); then
      a=$(one "$bin" cxx-spawn) b=$(one "$bin" capi)
    else
      b=$(one "$bin" capi) a=$(one "$bin" cxx-spawn)
    fi
    echo "libcoblk $linkage process pair $i: cxx-spawn $a ns, capi $b ns"
    cxx+=("$a") capi+=("$b")
  done
  mc=$(printf '%s\n' "${cxx[@]}" | median)
  ma=$(printf '%s\n' "${capi[@]}" | median)
  awk -v l="$linkage" -v c="$mc" -v a="$ma" 'BEGIN {
    printf "libcoblk %s median: cxx-spawn %.1f ns, capi %.1f ns: capi %+.1f%%\n", l, c, a, (a / c - 1) * 100 }'
done
