#!/usr/bin/env bash
# coblk-bench next to fio's gfapi_async engine and `qemu-img bench` on one
# image of a GlusterFS volume: 4 KiB reads and writes at iodepth 1 and 32,
# the tools alternating within each round, ROUNDS rounds; prints every
# round, then per workload the medians (requests per second) and the
# coblk/peer ratios.
#
# usage: bench/gluster_vs_fio.sh [BUILD_DIR [ROUNDS [RUNTIME_S [MODE]]]]
#   defaults: build, 5 rounds, 8 s per run, MODE all
#   MODE random:     coblk-bench and fio, randread and randwrite
#   MODE sequential: coblk-bench and qemu-img bench, read and write walking
#                    the image in 4 KiB steps (qemu-img bench has no random
#                    mode, and write-behind merges sequential writes, so
#                    it is only compared with coblk on the same pattern)
#   MODE all:        both, alternating within each round
# Needs root (it starts the test server with tests/services/with-gluster.sh
# unless COBLK_GLUSTER_URI names a running one), fio and qemu-img with the
# gluster block driver (qemu-block-extra).
#
# How each tool is timed, so that connection set-up and glfs_fini (about
# 10 s inside libgfapi, once per process) count for none of them:
#   coblk-bench and fio: their own IOPS over their own runtime (time_based),
#     which starts after the image is open and ends before it is closed;
#   qemu-img bench: requests / its own "Run completed in S seconds", which
#     times only the requests. Its count is set from coblk's IOPS on the same
#     pattern in the same round so that it also runs about RUNTIME_S.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
if [[ -z ${COBLK_GLUSTER_URI:-} ]]; then
    exec "$top/tests/services/with-gluster.sh" "$0" "$@"
fi
build=$(realpath "${1:-build}")
rounds=${2:-5}
runtime=${3:-8}
mode=${4:-all}
case $mode in all | random | sequential) ;; *) echo "gluster_vs_fio: MODE is all, random or sequential, not '$mode'" >&2; exit 2 ;; esac
bench="$build/bench/coblk-bench"
img="$build/tools/coblk-img"
[[ -x $bench && -x $img ]] || { echo "gluster_vs_fio: build $bench and $img first" >&2; exit 2; }
command -v fio >/dev/null || { echo "gluster_vs_fio: fio not installed" >&2; exit 2; }
command -v qemu-img >/dev/null || { echo "gluster_vs_fio: qemu-img not installed" >&2; exit 2; }

uri=${COBLK_GLUSTER_URI%/}
rest=${uri#gluster://}
host=${rest%%/*}
volume=${rest#*/}
name=coblk-gluster-bench.img
size_mb=512
image="$uri/$name"

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
json_iops() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["jobs"][0][sys.argv[2]]["iops"])' "$@"; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
echo "tools: $(fio --version), $(qemu-img --version | head -1)"
echo "image: $image, ${size_mb} MiB, written in full before the runs; $rounds rounds of ${runtime}s"
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$img" create -f raw "$image" "${size_mb}M" >/dev/null
# Every block written once, so reads hit data on the brick, not holes.
"$bench" --name=fill --filename="$image" --rw=write --bs=1M --iodepth=4 >/dev/null

# coblk_iops RW DEPTH: coblk-bench's requests per second
coblk_iops() {
    "$bench" --name=c --filename="$image" --rw="$1" --bs=4k --iodepth="$2" \
        --runtime="$runtime" --time_based --output-format=json >"$tmp/c.json"
    json_iops "$tmp/c.json" "${1#rand}"
}
fio_iops() {
    fio --name=f --ioengine=gfapi_async --volume="$volume" --brick="$host" \
        --filename="$name" --size=${size_mb}M --rw="$1" --bs=4k --iodepth="$2" \
        --runtime="$runtime" --time_based --output-format=json >"$tmp/f.json" 2>"$tmp/f.err" ||
        { cat "$tmp/f.err" >&2; exit 1; }
    json_iops "$tmp/f.json" "${1#rand}"
}
# qemu_iops RW DEPTH COUNT: qemu-img bench's requests per second, from its own time
qemu_iops() {
    local w=() out s
    [[ $1 == write ]] && w=(-w)
    out=$(qemu-img bench -f raw -t writeback -c "$3" -d "$2" -s 4096 -S 4096 "${w[@]}" \
        "$image" 2>&1) || { echo "$out" >&2; exit 1; }
    s=$(sed -n 's/Run completed in \([0-9.]*\) seconds./\1/p' <<<"$out")
    awk -v n="$3" -v s="$s" 'BEGIN {printf "%.0f", n / s}'
}
medians() { # LABEL A_NAME B_NAME A_VALUES B_VALUES
    local ma mb
    ma=$(tr ' ' '\n' <<<"$4" | grep . | median)
    mb=$(tr ' ' '\n' <<<"$5" | grep . | median)
    awk -v w="$1" -v an="$2" -v bn="$3" -v a="$ma" -v b="$mb" 'BEGIN {
        printf "%s median: %s %.0f, %s %.0f req/s; ratio %.3f\n", w, an, a, bn, b, a / b }'
}

for dir in read write; do
    for depth in 1 32; do
        cr="" fr="" cs="" qs=""
        for ((i = 1; i <= rounds; i++)); do
            line="$dir qd$depth round $i:"
            if [[ $mode != sequential ]]; then
                c=$(coblk_iops "rand$dir" "$depth")
                f=$(fio_iops "rand$dir" "$depth")
                cr+=" $c" fr+=" $f"
                line+=$(printf ' random: coblk %6.0f fio %6.0f;' "$c" "$f")
            fi
            if [[ $mode != random ]]; then
                c=$(coblk_iops "$dir" "$depth")
                count=$(awk -v c="$c" -v t="$runtime" 'BEGIN {n = int(c * t); print (n < 2000) ? 2000 : n}')
                q=$(qemu_iops "$dir" "$depth" "$count")
                cs+=" $c" qs+=" $q"
                line+=$(printf ' sequential: coblk %6.0f qemu-img %6.0f;' "$c" "$q")
            fi
            echo "$line load $(cut -d' ' -f1 /proc/loadavg)"
        done
        [[ $mode == sequential ]] || medians "rand$dir qd$depth" coblk "fio gfapi_async" "$cr" "$fr"
        [[ $mode == random ]] || medians "$dir qd$depth (sequential)" coblk qemu-img "$cs" "$qs"
    done
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
