#!/usr/bin/env bash
# The engine's cost per request next to QEMU's: 4 KiB reads of the null
# backend at queue depth 1 and 32, coblk's null-cost and
# `qemu-img bench --image-opts driver=null-co,size=1G` alternating, ROUNDS
# rounds each; prints every round, then the medians and the coblk/qemu ratio
# of requests per second.
# usage: bench/null_vs_qemu.sh [BUILD_DIR [ROUNDS [COUNT]]]
set -euo pipefail
build=${1:-build}
rounds=${2:-5}
count=${3:-2000000}
nc="$build/bench/null-cost"
[ -x "$nc" ] || { echo "null_vs_qemu: $nc not built (ninja -C $build)" >&2; exit 2; }
command -v qemu-img >/dev/null || { echo "null_vs_qemu: qemu-img not installed" >&2; exit 2; }

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
for depth in 1 32; do
  coblk=() qemu=()
  for ((i = 1; i <= rounds; i++)); do
    c=$("$nc" "$depth" "$count" | sed -n 's/.* iops=\([0-9.]*\).*/\1/p')
    s=$(qemu-img bench -c "$count" -d "$depth" --image-opts driver=null-co,size=1G 2>&1 |
        sed -n 's/Run completed in \([0-9.]*\) seconds./\1/p')
    q=$(awk -v n="$count" -v s="$s" 'BEGIN {printf "%.0f", n / s}')
    echo "depth $depth round $i: coblk $c req/s, qemu-img $q req/s"
    coblk+=("$c") qemu+=("$q")
  done
  mc=$(printf '%s\n' "${coblk[@]}" | median)
  mq=$(printf '%s\n' "${qemu[@]}" | median)
  awk -v d="$depth" -v c="$mc" -v q="$mq" 'BEGIN {
    printf "depth %s median: coblk %.0f req/s (%.0f ns/req), qemu-img %.0f req/s (%.0f ns/req), ratio %.2f\n",
           d, c, 1e9 / c, q, 1e9 / q, c / q }'
done
