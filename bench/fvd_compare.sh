#!/usr/bin/env bash
# FVD's speed targets (issue 4), side by side on one disk, ROUNDS alternating
# rounds each, medians and ratios:
#   alloc-write  4 KiB random writes into space already allocated, iodepth
#                32, cache=none: FVD (compact) against coblk raw.
#   first-write  first writes into an empty image, 4 KiB, iodepth 32,
#                cache=none, one write per 64 KiB cluster/block: FVD compact
#                (coblk-bench --ba=64k, random order) against qcow2
#                (qemu-img bench -w -S 65536, ascending order: qcow2's
#                easiest case).
#   base-read    4 KiB random reads, iodepth 32, cache=none, of an FVD
#                overlay whose data is all still in its base, against
#                reading the base directly.
#   prefetch     an FVD overlay on a 1 GiB base, prefetch=on, idle guest:
#                time until the whole base is in (bench/fvd-prefetch); then
#                a guest randread job with and without prefetch running.
# usage: bench/fvd_compare.sh [BUILD_DIR [ROUNDS [DIR]]]
# DIR (default /var/tmp/coblk-fvd-bench) must be on the disk to measure.
set -euo pipefail
build=${1:-build}
rounds=${2:-5}
dir=${3:-/var/tmp/coblk-fvd-bench}
bench="$build/bench/coblk-bench"
img="$build/tools/coblk-img"
pf="$build/bench/fvd-prefetch"
for x in "$bench" "$img" "$pf"; do
    [ -x "$x" ] || { echo "fvd_compare: $x not built (ninja -C $build)" >&2; exit 2; }
done
command -v qemu-img >/dev/null || { echo "fvd_compare: qemu-img not installed" >&2; exit 2; }
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
# iops JSON: the write or read IOPS coblk-bench reported.
iops() {
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]
print(round(j["write"]["iops"] + j["read"]["iops"]))' "$1"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
echo "disk: $(df -h "$dir" | awk 'NR==2 {print $1 " mounted on " $6}'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)"

# --- alloc-write -------------------------------------------------------------
"$bench" --name=fill --filename="$dir/raw.img" --size=1G --rw=write --bs=1M --iodepth=8 \
    --direct=1 >/dev/null 2>&1 || { truncate -s 1G "$dir/raw.img"; "$bench" --name=fill \
    --filename="$dir/raw.img" --rw=write --bs=1M --iodepth=8 --direct=1 >/dev/null; }
"$img" create -q -f fvd "$dir/full.fvd" 1G
"$bench" --name=fill --filename="$dir/full.fvd" --rw=write --bs=1M --iodepth=8 --direct=1 >/dev/null
job=(--rw=randwrite --bs=4k --iodepth=32 --direct=1 --runtime=5 --time_based --randseed=1
     --output-format=json)
raw=() fvd=()
for ((i = 1; i <= rounds; i++)); do
    "$bench" --name=raw --filename="$dir/raw.img" --format=raw "${job[@]}" >"$dir/r.json"
    "$bench" --name=fvd --filename="$dir/full.fvd" "${job[@]}" >"$dir/f.json"
    r=$(iops "$dir/r.json") f=$(iops "$dir/f.json")
    echo "alloc-write round $i: raw $r IOPS, fvd $f IOPS, ratio $(ratio "$f" "$r")"
    raw+=("$r") fvd+=("$f")
done
mr=$(printf '%s\n' "${raw[@]}" | median) mf=$(printf '%s\n' "${fvd[@]}" | median)
echo "alloc-write median: raw $mr IOPS, fvd $mf IOPS, ratio $(ratio "$mf" "$mr") (target >= 0.95)"
rm -f "$dir/raw.img" "$dir/full.fvd"

# --- first-write -------------------------------------------------------------
count=32768   # one write per 64 KiB of a 2 GiB image
qc=() fv=()
for ((i = 1; i <= rounds; i++)); do
    rm -f "$dir/a.fvd" "$dir/a.qcow2"
    "$img" create -q -f fvd "$dir/a.fvd" 2G
    qemu-img create -q -f qcow2 "$dir/a.qcow2" 2G
    "$bench" --name=first --filename="$dir/a.fvd" --rw=randwrite --bs=4k --ba=64k --iodepth=32 \
        --direct=1 --randseed="$i" --output-format=json >"$dir/f.json"
    f=$(iops "$dir/f.json")
    s=$(qemu-img bench -w -t none -c "$count" -d 32 -s 4096 -S 65536 -f qcow2 "$dir/a.qcow2" 2>&1 |
        sed -n 's/Run completed in \([0-9.]*\) seconds./\1/p')
    q=$(awk -v n="$count" -v s="$s" 'BEGIN {printf "%.0f", n / s}')
    echo "first-write round $i: fvd $f IOPS, qcow2 $q IOPS, ratio $(ratio "$f" "$q")"
    fv+=("$f") qc+=("$q")
done
mf=$(printf '%s\n' "${fv[@]}" | median) mq=$(printf '%s\n' "${qc[@]}" | median)
echo "first-write median: fvd $mf IOPS, qcow2 $mq IOPS, ratio $(ratio "$mf" "$mq") (target >= 2.0)"
rm -f "$dir/a.fvd" "$dir/a.qcow2"

# --- base-read ---------------------------------------------------------------
"$bench" --name=fill --filename="$dir/base.raw" --size=1G --rw=write --bs=1M --iodepth=8 \
    --direct=1 >/dev/null 2>&1 || { truncate -s 1G "$dir/base.raw"; "$bench" --name=fill \
    --filename="$dir/base.raw" --rw=write --bs=1M --iodepth=8 --direct=1 >/dev/null; }
"$img" create -q -f fvd -b base.raw -F raw "$dir/over.fvd"
job=(--rw=randread --bs=4k --iodepth=32 --direct=1 --runtime=5 --time_based --randseed=1
     --output-format=json)
bs=() ov=()
for ((i = 1; i <= rounds; i++)); do
    "$bench" --name=base --filename="$dir/base.raw" --format=raw "${job[@]}" >"$dir/b.json"
    "$bench" --name=over --filename="$dir/over.fvd" "${job[@]}" >"$dir/o.json"
    b=$(iops "$dir/b.json") o=$(iops "$dir/o.json")
    echo "base-read round $i: base $b IOPS, overlay $o IOPS, ratio $(ratio "$o" "$b")"
    bs+=("$b") ov+=("$o")
done
mb=$(printf '%s\n' "${bs[@]}" | median) mo=$(printf '%s\n' "${ov[@]}" | median)
echo "base-read median: base $mb IOPS, overlay $mo IOPS, ratio $(ratio "$mo" "$mb") (target >= 0.9)"

# --- prefetch ----------------------------------------------------------------
for ((i = 1; i <= rounds; i++)); do
    rm -f "$dir/p.fvd"
    "$img" create -q -f fvd -b base.raw -F raw "$dir/p.fvd"
    "$pf" "$dir/p.fvd" 5 | sed "s/^/prefetch round $i: /"
done
