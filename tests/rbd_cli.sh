#!/usr/bin/env bash
# coblk-img snapshot/info and coblk-bench --verify on RBD images of a real
# Ceph cluster, checked with the rbd, qemu-img and qemu-io commands.
# Needs COBLK_CEPH_CONF (run under tests/services/with-ceph.sh).
#
# Usage: rbd_cli.sh COBLK_IMG COBLK_BENCH
# Prints "ok N - ..." per check and "N passed, M failed"; exits 1 on failure.
set -uo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 COBLK_IMG COBLK_BENCH" >&2
    exit 2
fi
IMG=$(realpath "$1")
BENCH=$(realpath "$2")
CONF=${COBLK_CEPH_CONF:-}
POOL=${COBLK_CEPH_POOL:-rbd}
if [[ -z $CONF ]]; then
    echo "FAIL: COBLK_CEPH_CONF is not set: run under tests/services/with-ceph.sh" >&2
    exit 1
fi
SCRATCH=$(mktemp -d "${TMPDIR:-/var/tmp}/coblk-rbd-cli.XXXXXX")
NAME=coblk-cli-$$
URI="rbd:$POOL/$NAME:conf=$CONF"
rbdc() { timeout 60 rbd -c "$CONF" --rados-osd-op-timeout 30 --rados-mon-op-timeout 30 "$@"; }
cleanup() {
    rbdc snap purge --no-progress "$POOL/$NAME" >/dev/null 2>&1
    rbdc rm --no-progress "$POOL/$NAME" >/dev/null 2>&1
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

passed=0 failed=0
OUT=$SCRATCH/out ERR=$SCRATCH/err
fail() { echo "  $*" >&2; return 1; }
# run_check N TITLE FUNC: runs FUNC, prints ok/not ok
run_check() {
    if "$3"; then
        echo "ok $1 - $2"
        passed=$((passed + 1))
    else
        echo "not ok $1 - $2"
        failed=$((failed + 1))
    fi
}
# expect STATUS CMD...: runs CMD with stdout/stderr in $OUT/$ERR; fails
# unless it exits with STATUS
expect() {
    local want=$1
    shift
    "$@" >"$OUT" 2>"$ERR"
    local got=$?
    [[ $got == "$want" ]] || fail "'$*' exited $got, not $want; stderr: $(cat "$ERR")"
}
# snap_names: the snapshot names rbd lists for the image, one a line
snap_names() {
    rbdc snap ls --format json "$POOL/$NAME" | python3 -c 'import json,sys; print("\n".join(s["name"] for s in json.load(sys.stdin)))'
}

check_1() {
    expect 0 "$IMG" create -q "$URI" 8M || return 1
    expect 0 qemu-io -f raw -c 'write -P 0x11 0 8M' "$URI" || return 1
    expect 0 "$IMG" snapshot -c before "$URI" || return 1
    [[ $(snap_names) == before ]] || fail "rbd snap ls shows '$(snap_names)', not 'before'" || return 1
    expect 0 "$IMG" snapshot -l "$URI" || return 1
    grep -qE '^[0-9]+ +before +8 MiB [0-9]{4}-' "$OUT" || fail "snapshot -l: $(cat "$OUT")" || return 1
    expect 0 "$IMG" info "$URI" || return 1
    grep -q '^Snapshot list:' "$OUT" && grep -qE ' before ' "$OUT" || fail "info: $(cat "$OUT")"
}

check_2() {
    # New data on the head; the snapshot keeps the old, revert brings it back.
    expect 0 qemu-io -f raw -c 'write -P 0x22 1M 2M' "$URI" || return 1
    head -c $((8 << 20)) /dev/zero | tr '\0' '\021' >"$SCRATCH/old.raw"
    expect 0 qemu-img compare -f raw -F raw "rbd:$POOL/$NAME@before:conf=$CONF" "$SCRATCH/old.raw" || return 1
    expect 1 qemu-img compare -f raw -F raw "$URI" "$SCRATCH/old.raw" || return 1
    expect 0 "$IMG" snapshot -a before "$URI" || return 1
    expect 0 qemu-img compare -f raw -F raw "$URI" "$SCRATCH/old.raw"
}

check_3() {
    expect 0 rbdc snap create --no-progress "$POOL/$NAME@by-rbd" || return 1
    expect 0 "$IMG" snapshot -l "$URI" || return 1
    grep -q ' by-rbd ' "$OUT" || fail "snapshot -l misses by-rbd: $(cat "$OUT")" || return 1
    expect 0 "$IMG" snapshot -d before "$URI" || return 1
    [[ $(snap_names) == by-rbd ]] || fail "rbd snap ls shows '$(snap_names)' after -d before"
}

check_4() {
    expect 1 "$IMG" snapshot -d no-such-snap "$URI" || return 1
    grep -q "snapshot 'no-such-snap'" "$ERR" || fail "stderr: $(cat "$ERR")" || return 1
    expect 1 "$IMG" snapshot -c by-rbd "$URI" || return 1
    grep -q "exists" "$ERR" || fail "stderr: $(cat "$ERR")" || return 1
    expect 1 "$IMG" snapshot -c x "rbd:$POOL/$NAME@by-rbd:conf=$CONF" || return 1
    grep -q "read-only" "$ERR" || fail "stderr: $(cat "$ERR")" || return 1
    expect 1 "$IMG" snapshot -c a -d b "$URI" || return 1
    grep -q "only one of" "$ERR" || fail "stderr: $(cat "$ERR")"
}

check_5() {
    # A mixed random workload with verification, then a second run that
    # reads and verifies what was written.
    expect 0 "$BENCH" --name=mix --filename="$URI" --rw=randrw --bs=4k --iodepth=16 --size=4M \
        --verify=crc32c --output-format=json || return 1
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["jobs"][0]; sys.exit(0 if d["error"]==0 and d["read"]["total_ios"]>0 and d["write"]["total_ios"]>0 else 1)' "$OUT" ||
        fail "randrw verify: $(head -c 2000 "$OUT")" || return 1
    expect 0 "$BENCH" --name=w --filename="$URI" --rw=randwrite --bs=4k --iodepth=32 --size=8M \
        --verify=crc32c --output-format=json || return 1
    expect 0 "$BENCH" --name=r --filename="$URI" --rw=randread --bs=4k --iodepth=8 \
        --verify=crc32c --output-format=json || return 1
    # A corrupted block (written with qemu-io) is caught.
    expect 0 qemu-io -f raw -c 'write -P 0x33 20480 4096' "$URI" || return 1
    expect 1 "$BENCH" --name=r --filename="$URI" --rw=read --bs=4k --verify=crc32c \
        --output-format=json || return 1
    grep -q "verify error at offset 20480" "$ERR" || fail "stderr: $(cat "$ERR")"
}

run_check 1 "coblk-img snapshot -c makes an rbd snapshot; -l and info list it" check_1
run_check 2 "the snapshot keeps the old data (qemu-img compare); -a reverts to it" check_2
run_check 3 "a snapshot made by rbd is listed; -d deletes ours" check_3
run_check 4 "snapshot errors name the snapshot; no snapshot of a snapshot" check_4
run_check 5 "coblk-bench --verify on rbd: mixed workload, re-read, corruption caught" check_5
echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
