#!/usr/bin/env bash
# coblk-bench end to end, as a user runs it: jobs on null:// and on scratch
# files, JSON read back by python3 (not by coblk code), verify=crc32c across
# runs, fio job files, bad input refused before any I/O with the right
# message and exit status, an I/O error stopping a job with partial results,
# --plot producing well-formed SVG, and an O_DIRECT alignment check on a
# 4096-byte-sector loop device (root only).
#
# Usage: bench_cli.sh COBLK_BENCH [SCRATCH_DIR]
# Prints "ok N - ..." per check and "N passed, M failed"; exits 1 on failure.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 COBLK_BENCH [SCRATCH_DIR]" >&2
    exit 2
fi
BENCH=$(realpath "$1")
[[ -x $BENCH ]] || { echo "FAIL: '$1' is not an executable" >&2; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is needed" >&2; exit 1; }

if [[ $# -eq 2 ]]; then
    SCRATCH=$(realpath "$2")
    mkdir -p "$SCRATCH"
    OWN_SCRATCH=0
else
    # /var/tmp rather than /tmp, which may be a tmpfs without O_DIRECT.
    SCRATCH=$(mktemp -d "${TMPDIR:-/var/tmp}/coblk-bench-cli.XXXXXX")
    OWN_SCRATCH=1
fi
LOOP_DEV=""
LOOP_BACKING=""
cleanup() {
    if [[ -n $LOOP_DEV ]] &&
        [[ $(losetup -n -O BACK-FILE "$LOOP_DEV" 2>/dev/null) == "$LOOP_BACKING" ]]; then
        losetup -d "$LOOP_DEV" || true
    fi
    if [[ $OWN_SCRATCH -eq 1 ]]; then
        rm -rf "$SCRATCH"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

OUT=$SCRATCH/out
ERR=$SCRATCH/err
# fail, stderr_has, json_check on the last run's $OUT and $ERR
OUT_FILE=$OUT
ERR_FILE=$ERR
# shellcheck source=tests/check_lib.sh
source "$(dirname "$0")/check_lib.sh"

# run_expect RC ARGS...: runs coblk-bench with ARGS (stdout in $OUT, stderr
# in $ERR) and fails unless it exits with RC.
run_expect() {
    local want=$1
    shift
    expect_exit "$want" "$BENCH" "$@"
}

check_1() {
    run_expect 0 --name=nul --filename=null:// --rw=randread --bs=4k --iodepth=32 \
        --runtime=1 --time_based --output-format=json
    json_check "d['fio version'].startswith('coblk-bench')" \
        "len(d['jobs']) == 1" "d['jobs'][0]['jobname'] == 'nul'" \
        "d['jobs'][0]['error'] == 0" \
        "d['jobs'][0]['read']['total_ios'] > 0" \
        "abs(d['jobs'][0]['read']['iops'] * d['jobs'][0]['read']['runtime'] / 1000 - d['jobs'][0]['read']['total_ios']) <= 0.02 * d['jobs'][0]['read']['total_ios']" \
        "d['jobs'][0]['read']['bw'] > 0" \
        "d['jobs'][0]['read']['total_ios'] == d['jobs'][0]['read']['clat_ns']['N']" \
        "d['jobs'][0]['read']['clat_ns']['percentile']['99.000000'] >= d['jobs'][0]['read']['clat_ns']['percentile']['50.000000'] > 0" \
        "d['jobs'][0]['read']['clat_ns']['min'] <= d['jobs'][0]['read']['clat_ns']['mean'] <= d['jobs'][0]['read']['clat_ns']['max']" \
        "900 <= d['jobs'][0]['read']['runtime'] <= 10000" \
        "d['jobs'][0]['write']['total_ios'] == 0"
    # Not a terminal: no progress line, nothing on stderr.
    [[ ! -s $ERR ]] || fail "stderr is not empty: $(cat "$ERR")"
}

check_2() {
    local f=$SCRATCH/data.img
    rm -f "$f"
    # A missing file is created at size; randwrite with verify writes every
    # block once and reads the region back.
    run_expect 0 --name=w --filename="$f" --rw=randwrite --bs=4k --size=8M --iodepth=8 \
        --verify=crc32c --output-format=json
    json_check "d['jobs'][0]['error'] == 0" "d['jobs'][0]['write']['total_ios'] == 2048" \
        "d['jobs'][0]['read']['total_ios'] == 2048" \
        "d['jobs'][0]['write']['io_bytes'] == 8 << 20"
    [[ $(stat -c %s "$f") -eq $((8 << 20)) ]] || fail "the file is not 8 MiB"
    # Another run reads and verifies what the first wrote.
    run_expect 0 --name=r --filename="$f" --rw=randread --bs=4k --iodepth=4 --verify=crc32c \
        --output-format=json
    json_check "d['jobs'][0]['read']['total_ios'] == 2048"
    # One flipped byte is caught, naming the block's offset; results still print.
    printf 'X' | dd of="$f" bs=1 seek=$((5 * 4096 + 100)) conv=notrunc status=none
    run_expect 1 --name=r --filename="$f" --rw=read --bs=4k --verify=crc32c --output-format=json
    stderr_has "coblk-bench: r: verify error at offset 20480: crc32c mismatch"
    json_check "d['jobs'][0]['error'] != 0" "d['jobs'][0]['read']['total_ios'] >= 5"
}

check_3() {
    local f=$SCRATCH/normal.img
    head -c $((4 << 20)) /dev/urandom >"$f"
    run_expect 0 --name=seq --filename="$f" --rw=read --bs=64k --iodepth=2
    grep -qE '^seq: \(groupid=0, jobs=1\): err= 0: pid=[0-9]+' "$OUT" || fail "no job line"
    grep -qE '^  read: IOPS=[0-9.]+k?, BW=' "$OUT" || fail "no read line"
    grep -qE '^    clat percentiles \((n|u|m)sec\):$' "$OUT" || fail "no percentile header"
    grep -qE '^     \|  1\.00th=\[ *[0-9]+\],  5\.00th=\[' "$OUT" || fail "no percentile table"
    grep -qE '^  cpu +: usr=[0-9.]+%, sys=[0-9.]+%' "$OUT" || fail "no cpu line"
    grep -qE '^Run status group 0 \(all jobs\):$' "$OUT" || fail "no group summary"
    grep -qE '^   READ: bw=.*io=4096KiB' "$OUT" || fail "the summary does not show 4 MiB read"
}

check_4() {
    local f=$SCRATCH/jobfile.img
    head -c $((2 << 20)) /dev/urandom >"$f"
    cat >"$SCRATCH/test.fio" <<EOF
; an fio job file as fio users write them
[global]
ioengine=libaio
direct=0
bs=4k
iodepth=4
filename=$f
group_reporting

[readers]
rw=randread
numjobs=2
number_ios=500

[writer]
stonewall
rw=write
size=1M
EOF
    run_expect 0 --output-format=json "$SCRATCH/test.fio"
    stderr_has "coblk-bench: note: ignoring fio option 'ioengine=libaio' (coblk uses its own engine)"
    [[ $(grep -c "note:" "$ERR") -eq 1 ]] || fail "expected exactly one note"
    json_check "len(d['jobs']) == 2" "d['jobs'][0]['jobname'] == 'readers'" \
        "d['jobs'][0]['read']['total_ios'] == 1000" "d['jobs'][1]['groupid'] == 1" \
        "d['jobs'][1]['write']['total_ios'] == 256"
    # Command-line options override the file for every job.
    run_expect 0 --output-format=json --filename=null:// --bs=8k "$SCRATCH/test.fio"
    json_check "d['jobs'][1]['write']['io_bytes'] == 1 << 20" \
        "d['jobs'][0]['read']['io_bytes'] == 1000 * 8192"
}

check_5() {
    local f=$SCRATCH/small.img
    head -c $((1 << 20)) /dev/urandom >"$f"
    run_expect 1 --name=t --filename=null:// --bs=0
    stderr_has "bs=0"
    run_expect 1 --name=t --filename=null:// --frobnicate=2
    stderr_has "unknown option 'frobnicate'"
    run_expect 1 --name=t --filename=null:// --rwmixread=101
    stderr_has "rwmixread=101"
    run_expect 1 --name=t --filename=null:// --numjobs=0
    stderr_has "numjobs=0"
    run_expect 1 --name=t --filename="$f" --rw=randread --size=2M
    stderr_has "size=2M"
    run_expect 1 --name=t --filename="$SCRATCH/absent.img" --rw=read
    stderr_has "size="
    [[ ! -e $SCRATCH/absent.img ]] || fail "a file was created for a refused job"
    printf '[t]\nfilename=null://\nrw=read\nbogus_key=1\n' >"$SCRATCH/bad.fio"
    run_expect 1 "$SCRATCH/bad.fio"
    stderr_has "bad.fio:4: unknown option 'bogus_key'"
    [[ ! -s $OUT ]] || fail "a refused run printed a report"
}

check_6() {
    local f=$SCRATCH/limited.img
    truncate -s 4M "$f"
    # Writes past 1 MiB fail with EFBIG under this file size limit (the
    # signal is ignored so that the write itself reports the error).
    local rc=0
    (
        trap '' XFSZ
        ulimit -f 1024
        exec "$BENCH" --name=lim --filename="$f" --rw=write --bs=64k --output-format=json
    ) >"$OUT" 2>"$ERR" || rc=$?
    [[ $rc -eq 1 ]] || fail "exit status $rc, expected 1"
    stderr_has "coblk-bench: lim: write error at offset 1048576: File too large"
    json_check "d['jobs'][0]['error'] == 27" "d['jobs'][0]['write']['total_ios'] == 16"
}

check_7() {
    run_expect 0 --name=p --filename=null:// --rw=randrw --bs=4k --iodepth=4 --runtime=1 \
        --time_based --numjobs=2 --plot="$SCRATCH/plot.svg" --output="$SCRATCH/report.txt"
    [[ ! -s $OUT ]] || fail "--output: the report went to standard output"
    grep -q "Run status group 0" "$SCRATCH/report.txt" || fail "--output file lacks the report"
    python3 - "$SCRATCH/plot.svg" <<'PY'
import sys, xml.dom.minidom
doc = xml.dom.minidom.parse(sys.argv[1])
svg = doc.documentElement
assert svg.tagName == "svg", svg.tagName
lines = svg.getElementsByTagName("polyline")
assert len(lines) >= 4, f"{len(lines)} polylines: expected read and write in both charts"
texts = " ".join(t.firstChild.data for t in svg.getElementsByTagName("text") if t.firstChild)
assert "p99" in texts and "IOPS" in texts, texts
PY
}

check_8() {
    # A 4096-byte-sector loop device: O_DIRECT needs 4 KiB alignment.
    LOOP_BACKING=$SCRATCH/loop4k.img
    truncate -s 16M "$LOOP_BACKING"
    LOOP_DEV=$(losetup --find --show --sector-size 4096 "$LOOP_BACKING")
    # Checks run in subshells: the script's own EXIT trap never sees LOOP_DEV.
    trap 'losetup -d "$LOOP_DEV" 2>/dev/null || true' EXIT
    run_expect 1 --name=a --filename="$LOOP_DEV" --direct=1 --rw=randread --bs=3k
    stderr_has "bs=3k"
    stderr_has "4096"
    run_expect 0 --name=a --filename="$LOOP_DEV" --direct=1 --rw=randwrite --bs=4k \
        --number_ios=1000 --output-format=json
    json_check "d['jobs'][0]['write']['total_ios'] == 1000"
}

source "$(dirname "$0")/run_check.sh"

run_check 1 "null:// randread: JSON parses with fio's paths; no progress off a terminal" check_1
run_check 2 "verify=crc32c: write, read back in another run, catch a flipped byte" check_2
run_check 3 "normal output has fio's layout" check_3
run_check 4 "fio job file: [global], numjobs, stonewall, one note; CLI overrides" check_4
run_check 5 "bad input is refused before any I/O, naming the key and value" check_5
run_check 6 "an I/O error stops the job with the offset; partial results print" check_6
run_check 7 "--plot writes well-formed SVG; --output takes the report" check_7
if [[ $(id -u) -eq 0 ]] && command -v losetup >/dev/null; then
    run_check 8 "bs=3k refused against a 4096-byte O_DIRECT alignment (loop device)" check_8
else
    echo "skip 8 - O_DIRECT alignment on a loop device: not running as root"
fi

echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
