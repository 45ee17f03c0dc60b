#!/usr/bin/env bash
# coblk-bench next to fio's gfapi_async engine and `qemu-img bench` on one
# image of a GlusterFS volume: 4 KiB randread and randwrite at iodepth 1 and
# 32, the three tools alternating within each round, ROUNDS rounds; prints
# every round, then per workload the medians (requests per second) and the
# coblk/peer ratios.
#
# usage: bench/gluster_vs_fio.sh [BUILD_DIR [ROUNDS [RUNTIME_S]]]
#   defaults: build, 5 rounds, 8 s per run
# Needs root (it starts the test server with tests/services/with-gluster.sh
# unless COBLK_GLUSTER_URI names a running one), fio and qemu-img with the
# gluster block driver (qemu-block-extra).
#
# How each tool is timed, so that connection set-up and glfs_fini (about
# 10 s inside libgfapi, once per process) count for none of them:
#   coblk-bench and fio: their own IOPS over their own runtime (time_based),
#     which starts after the image is open and ends before it is closed;
#   qemu-img bench: requests / its own "Run completed in S seconds", which
#     times only the requests. Its count is set from coblk's IOPS in the same
#     round so that it also runs about RUNTIME_S. qemu-img bench has no random
#     mode: it walks the image in 4 KiB steps (-S), which this script gives
#     it as the nearest thing; fio and coblk-bench run truly random offsets.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
if [[ -z ${COBLK_GLUSTER_URI:-} ]]; then
    exec "$top/tests/services/with-gluster.sh" "$0" "$@"
fi
build=$(realpath "${1:-build}")
rounds=${2:-5}
runtime=${3:-8}
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

for rw in randread randwrite; do
    for depth in 1 32; do
        c_all=() f_all=() q_all=()
        for ((i = 1; i <= rounds; i++)); do
            "$bench" --name=c --filename="$image" --rw=$rw --bs=4k --iodepth=$depth \
                --runtime=$runtime --time_based --output-format=json >"$tmp/c.json"
            dir=${rw#rand}
            c=$(json_iops "$tmp/c.json" "$dir")
            fio --name=f --ioengine=gfapi_async --volume="$volume" --brick="$host" \
                --filename="$name" --size=${size_mb}M --rw=$rw --bs=4k --iodepth=$depth \
                --runtime=$runtime --time_based --output-format=json >"$tmp/f.json" 2>"$tmp/f.err" ||
                { cat "$tmp/f.err" >&2; exit 1; }
            f=$(json_iops "$tmp/f.json" "$dir")
            count=$(awk -v c="$c" -v t="$runtime" 'BEGIN {n = int(c * t); print (n < 2000) ? 2000 : n}')
            w=()
            [[ $rw == randwrite ]] && w=(-w)
            out=$(qemu-img bench -f raw -t writeback -c "$count" -d "$depth" -s 4096 -S 4096 "${w[@]}" \
                "$image" 2>&1) || { echo "$out" >&2; exit 1; }
            s=$(sed -n 's/Run completed in \([0-9.]*\) seconds./\1/p' <<<"$out")
            q=$(awk -v n="$count" -v s="$s" 'BEGIN {printf "%.0f", n / s}')
            printf '%s qd%-2s round %d: coblk %8.0f  fio %8.0f  qemu-img %8.0f req/s  (load %s)\n' \
                "$rw" "$depth" "$i" "$c" "$f" "$q" "$(cut -d' ' -f1 /proc/loadavg)"
            c_all+=("$c") f_all+=("$f") q_all+=("$q")
        done
        mc=$(printf '%s\n' "${c_all[@]}" | median)
        mf=$(printf '%s\n' "${f_all[@]}" | median)
        mq=$(printf '%s\n' "${q_all[@]}" | median)
        awk -v w="$rw qd$depth" -v c="$mc" -v f="$mf" -v q="$mq" 'BEGIN {
            printf "%s median: coblk %.0f, fio gfapi_async %.0f, qemu-img %.0f req/s; coblk/fio %.3f, coblk/qemu-img %.3f\n",
                   w, c, f, q, c / f, c / q }'
    done
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
