#!/usr/bin/env bash
# coblk-bench next to fio's rbd engine and qemu-img bench on one RBD image of
# the test cluster: 4 KiB randread and randwrite at iodepth 1 and 32, the
# tools alternating for ROUNDS rounds; prints every round, then the medians
# and coblk's ratio to each peer.
#
# usage: tests/services/with-ceph.sh bench/rbd_vs_fio.sh [BUILD_DIR [ROUNDS [SECONDS]]]
# (or with COBLK_CEPH_CONF set to a running cluster's ceph.conf)
#
# All three use the same conf file, a copy of the cluster's with
# `rbd cache = false` (qemu-img's -t none does the same for QEMU), and the
# same 1 GiB image, written in full first so that reads return data.
# qemu-img bench has no random pattern: it walks the image in 4 KiB steps.
# So each round also runs coblk-bench with that pattern (rw=read/write,
# sequential), and coblk is compared with qemu-img on it; coblk's random
# figure over qemu-img's sequential one is printed too. qemu-img's request
# count is set so that it runs about SECONDS, from coblk's sequential rate.
# At depth 1 each round also runs both tools polling for completions instead
# of sleeping (coblk-bench and fio both call the option busy_poll), a
# like-for-like comparison of that mode.
set -euo pipefail
build=${1:-build}
rounds=${2:-5}
secs=${3:-10}
bench="$build/bench/coblk-bench"
[[ -x $bench ]] || { echo "rbd_vs_fio: $bench not built (ninja -C $build)" >&2; exit 2; }
[[ -n ${COBLK_CEPH_CONF:-} ]] ||
    { echo "rbd_vs_fio: COBLK_CEPH_CONF is not set: run under tests/services/with-ceph.sh" >&2; exit 2; }
for t in fio qemu-img rbd python3; do
    command -v $t >/dev/null || { echo "rbd_vs_fio: $t is not installed" >&2; exit 2; }
done
pool=${COBLK_CEPH_POOL:-rbd}
img=coblk-bench-$$
conf=$(dirname "$COBLK_CEPH_CONF")/bench-$$.conf
{ cat "$COBLK_CEPH_CONF"; printf '\n[client]\nrbd cache = false\n'; } >"$conf"
export CEPH_CONF=$conf
cleanup() { rbd -c "$conf" rm --no-progress "$pool/$img" >/dev/null 2>&1 || true; rm -f "$conf"; }
trap cleanup EXIT

rbd -c "$conf" create --size 1G "$pool/$img"
rbd -c "$conf" bench --io-type write --io-pattern seq --io-size 4M --io-threads 4 \
    --io-total 1G "$pool/$img" >/dev/null
uri="rbd:$pool/$img:conf=$conf"

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
# json_iops FILE DIR: the read or write IOPS of job 0 of a fio-style JSON report
json_iops() {
    python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["jobs"][0][sys.argv[2]]["iops"])' "$1" "$2"
}
json_ios() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["jobs"][0][sys.argv[2]]["total_ios"])' "$1" "$2"
}
# cpu_us N: CPU microseconds per request of the process /usr/bin/time
# measured into $cpu (user + system, all its threads, librados' included)
cpu_us() { awk -v n="$1" '{printf "%.1f", ($1 + $2) * 1e6 / n}' "$cpu"; }
cpu=$(mktemp)
T=(/usr/bin/time -f '%U %S' -o "$cpu")

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)"
echo "tools: $(fio --version), $(qemu-img --version | head -1), $(ceph --version | cut -d' ' -f1-3)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(mktemp)
for rw in randread randwrite; do
    dir=read
    wflag=()
    [[ $rw == randwrite ]] && dir=write wflag=(-w)
    for depth in 1 32; do
        c_all=() f_all=() s_all=() q_all=() cc_all=() fc_all=() sc_all=() qc_all=()
        cp_all=() fp_all=() cpc_all=() fpc_all=()
        seq=${rw#rand}
        for ((i = 1; i <= rounds; i++)); do
            "${T[@]}" "$bench" --name=c --filename="$uri" --format=raw --rw="$rw" --bs=4k --iodepth="$depth" \
                --runtime="$secs" --time_based --output-format=json --output="$out" >/dev/null
            c=$(json_iops "$out" "$dir") cc=$(cpu_us "$(json_ios "$out" "$dir")")
            "${T[@]}" fio --name=f --ioengine=rbd --clientname=admin --pool="$pool" --rbdname="$img" \
                --rw="$rw" --bs=4k --iodepth="$depth" --runtime="$secs" --time_based \
                --output-format=json --output="$out" >/dev/null
            f=$(json_iops "$out" "$dir") fc=$(cpu_us "$(json_ios "$out" "$dir")")
            "${T[@]}" "$bench" --name=s --filename="$uri" --format=raw --rw="$seq" --bs=4k --iodepth="$depth" \
                --runtime="$secs" --time_based --output-format=json --output="$out" >/dev/null
            sq=$(json_iops "$out" "$dir") sc=$(cpu_us "$(json_ios "$out" "$dir")")
            count=$((sq * secs))
            t=$("${T[@]}" qemu-img bench -f raw -t none -c "$count" -d "$depth" -s 4096 "${wflag[@]}" "$uri" 2>&1 |
                sed -n 's/Run completed in \([0-9.]*\) seconds./\1/p')
            q=$(awk -v n="$count" -v s="$t" 'BEGIN {printf "%.0f", n / s}') qc=$(cpu_us "$count")
            poll=""
            if ((depth == 1)); then
                "${T[@]}" "$bench" --name=c --filename="$uri" --format=raw --rw="$rw" --bs=4k --iodepth=1 \
                    --runtime="$secs" --time_based --busy_poll --output-format=json --output="$out" >/dev/null
                cp=$(json_iops "$out" "$dir") cpc=$(cpu_us "$(json_ios "$out" "$dir")")
                "${T[@]}" fio --name=f --ioengine=rbd --clientname=admin --pool="$pool" --rbdname="$img" \
                    --rw="$rw" --bs=4k --iodepth=1 --runtime="$secs" --time_based --busy_poll=1 \
                    --output-format=json --output="$out" >/dev/null
                fp=$(json_iops "$out" "$dir") fpc=$(cpu_us "$(json_ios "$out" "$dir")")
                cp_all+=("$cp") fp_all+=("$fp") cpc_all+=("$cpc") fpc_all+=("$fpc")
                poll=" | busy_poll: coblk $cp IOPS ${cpc} us, fio $fp IOPS ${fpc} us"
            fi
            echo "$rw depth $depth round $i: coblk $c IOPS ${cc} us CPU/req, fio $f IOPS ${fc} us | $seq: coblk $sq IOPS ${sc} us, qemu-img $q IOPS ${qc} us$poll (load $(cut -d' ' -f1 /proc/loadavg))"
            c_all+=("$c") f_all+=("$f") s_all+=("$sq") q_all+=("$q")
            cc_all+=("$cc") fc_all+=("$fc") sc_all+=("$sc") qc_all+=("$qc")
        done
        mc=$(printf '%s\n' "${c_all[@]}" | median)
        mf=$(printf '%s\n' "${f_all[@]}" | median)
        ms=$(printf '%s\n' "${s_all[@]}" | median)
        mq=$(printf '%s\n' "${q_all[@]}" | median)
        mcc=$(printf '%s\n' "${cc_all[@]}" | median)
        mfc=$(printf '%s\n' "${fc_all[@]}" | median)
        msc=$(printf '%s\n' "${sc_all[@]}" | median)
        mqc=$(printf '%s\n' "${qc_all[@]}" | median)
        # range A B: the lowest and highest per-round ratio A[k]/B[k], and
        # their median (the rounds pair the tools: each ran next to the other)
        range() {
            local -n x=$1 y=$2
            local r
            r=$(for ((k = 0; k < rounds; k++)); do
                awk -v a="${x[$k]}" -v b="${y[$k]}" 'BEGIN {printf "%.3f\n", a / b}'
            done | sort -g)
            printf '%s, per-round median %s' "$(sed -n '1p;$p' <<<"$r" | paste -sd' ' | sed 's/ /../')" \
                "$(median <<<"$r")"
        }
        awk -v rw="$rw" -v seq="$seq" -v d="$depth" -v c="$mc" -v f="$mf" -v s="$ms" -v q="$mq" \
            -v rf="$(range c_all f_all)" -v rq="$(range s_all q_all)" \
            -v cc="$mcc" -v fc="$mfc" -v sc="$msc" -v qc="$mqc" 'BEGIN {
          printf "%s depth %s median: coblk %.0f, fio %.0f IOPS: coblk/fio %.3f (%s)\n", rw, d, c, f, c / f, rf
          printf "%s depth %s median: coblk %.0f, qemu-img %.0f IOPS: coblk/qemu-img %.3f (%s); coblk %s / qemu-img %s %.3f\n",
                 seq, d, s, q, s / q, rq, rw, seq, c / q
          printf "%s depth %s median CPU us/req: coblk %s, fio %s (%s: coblk %s, qemu-img %s)\n", rw, d, cc, fc, seq, sc, qc }'
        if ((depth == 1)); then
            awk -v rw="$rw" -v c="$(printf '%s\n' "${cp_all[@]}" | median)" \
                -v f="$(printf '%s\n' "${fp_all[@]}" | median)" -v r="$(range cp_all fp_all)" \
                -v cc="$(printf '%s\n' "${cpc_all[@]}" | median)" \
                -v fc="$(printf '%s\n' "${fpc_all[@]}" | median)" 'BEGIN {
              printf "%s depth 1 busy_poll median: coblk %.0f, fio %.0f IOPS: coblk/fio %.3f (%s); CPU us/req coblk %s, fio %s\n",
                     rw, c, f, c / f, r, cc, fc }'
        fi
    done
done
rm -f "$out" "$cpu"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
