#!/usr/bin/env bash
# FVD images checked with tools nobody here wrote: the same content built as
# a qcow2 overlay by qemu-io and as an FVD overlay by coblk-img must read the
# same (coblk-img convert to raw, compared by qemu-img); FVD on a real loop
# device; a --verify workload through coblk-bench; check on a damaged image.
#
# Usage: fvd_interop.sh COBLK_IMG COBLK_BENCH
# Prints "ok N - ..." per check and "N passed, M failed"; exits 1 on failure.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 COBLK_IMG COBLK_BENCH" >&2
    exit 2
fi
IMG=$(realpath "$1")
BENCH=$(realpath "$2")
for tool in qemu-img qemu-io python3 dd losetup; do
    command -v "$tool" >/dev/null || { echo "FAIL: '$tool' is needed" >&2; exit 1; }
done

SCRATCH=$(mktemp -d "${TMPDIR:-/var/tmp}/coblk-fvd.XXXXXX")
# Checks run in subshells: the loop device they attach is noted in this
# file, so that the exit trap detaches it whatever happened.
LOOP_NOTE=$SCRATCH/loop-device
cleanup() {
    local dev
    if [[ -f $LOOP_NOTE ]]; then
        dev=$(cat "$LOOP_NOTE")
        if [[ $(losetup -n -O BACK-FILE "$dev" 2>/dev/null) == "$SCRATCH/disk"* ]]; then
            losetup -d "$dev" || true
        fi
    fi
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
cd "$SCRATCH"

PASSED=0
FAILED=0
N=0
check() {
    local name=$1
    shift
    N=$((N + 1))
    if ("$@") >"check-$N.log" 2>&1; then
        echo "ok $N - $name"
        PASSED=$((PASSED + 1))
    else
        echo "not ok $N - $name"
        sed 's/^/    /' "check-$N.log"
        FAILED=$((FAILED + 1))
    fi
}

fail() {
    echo "FAIL: $*"
    exit 1
}

# identical A B: qemu-img says the two raw images hold the same bytes.
identical() {
    local out
    out=$(qemu-img compare -f raw -F raw "$1" "$2") || fail "qemu-img compare $1 $2: $out"
    [[ $out == "Images are identical." ]] || fail "qemu-img compare said: $out"
}

MiB=$((1024 * 1024))

# A 64 MiB base written by qemu-io, and the same overlay writes as a qcow2
# overlay (by qemu-io) and a raw of the overlay's content.
make_base_and_qcow2() {
    qemu-img create -q -f raw base.raw 64M
    qemu-io -f raw -c 'write -P 0x11 0 8M' -c 'write -P 0x22 20M 3M' \
        -c "write -P 0x33 $((40 * MiB + 777)) 100000" base.raw >/dev/null
    qemu-img create -q -f qcow2 -b base.raw -F raw top.qcow2
    qemu-io -f qcow2 -c 'write -P 0xa1 4096 4096' -c "write -P 0xa2 $((1 * MiB + 100)) 70000" \
        -c 'write -P 0xa3 21M 64k' -c 'write -z 22M 128k' -c "write -P 0xa4 $((63 * MiB)) 1M" \
        -c "write -P 0xa5 $((30 * MiB + 5)) 9000" top.qcow2 >/dev/null
    qemu-img convert -f qcow2 -O raw top.qcow2 full.raw
}

# overlay COMPACT: an FVD overlay on base.raw given the qcow2 overlay's
# content by coblk-img, read back by coblk-img and compared by qemu-img.
overlay() {
    make_base_and_qcow2
    "$IMG" create -q -f fvd -o "compact=$1,block_size=16k" -b base.raw -F raw top.fvd
    "$IMG" convert -n -f raw -O fvd full.raw top.fvd
    "$IMG" check top.fvd || fail "check top.fvd"
    "$IMG" convert -O raw top.fvd out.raw
    identical full.raw out.raw
    # the qcow2 read by qemu against the FVD read by coblk, no raw between
    qemu-img compare -f qcow2 -F raw top.qcow2 out.raw >/dev/null || fail "qcow2 vs fvd"
    "$IMG" compare top.fvd full.raw || fail "coblk-img compare top.fvd full.raw"
}
check "compact FVD overlay reads as the qcow2 overlay qemu wrote" overlay on
check "non-compact FVD overlay reads as the qcow2 overlay qemu wrote" overlay off

fvd_over_fvd() {
    make_base_and_qcow2
    "$IMG" create -q -f fvd -b base.raw mid.fvd
    "$IMG" convert -n -f raw -O fvd full.raw mid.fvd
    "$IMG" create -q -f fvd -b mid.fvd -F fvd top.fvd
    qemu-io -f raw -c 'write -P 0xb1 5M 1M' full.raw >/dev/null
    "$IMG" convert -n -f raw -O fvd full.raw top.fvd
    "$IMG" convert -O raw top.fvd out.raw
    identical full.raw out.raw
    "$IMG" info top.fvd | grep -q "backing file: mid.fvd" || fail "info shows no base"
}
check "FVD over FVD over raw" fvd_over_fvd

round_trip() {
    qemu-img create -q -f raw src.raw 48M
    qemu-io -f raw -c 'write -P 0x5a 0 1M' -c "write -P 0x6b $((17 * MiB + 3)) 5M" \
        -c "write -P 0x7c $((48 * MiB - 4096)) 4096" src.raw >/dev/null
    "$IMG" convert -O fvd src.raw a.fvd
    "$IMG" convert -O raw a.fvd back.raw
    identical src.raw back.raw
    "$IMG" map --output=json a.fvd >map.json
    python3 - <<'EOF' || fail "map --output=json does not add up"
import json
m = json.load(open("map.json"))
assert m[0]["start"] == 0 and sum(r["length"] for r in m) == 48 << 20
assert any(r["data"] for r in m) and any(r["zero"] for r in m)
EOF
}
check "raw -> fvd -> raw through coblk-img, compared by qemu-img" round_trip

loop_device() {
    [[ $(id -u) -eq 0 ]] || fail "needs root for losetup"
    truncate -s 80M disk
    LOOP_DEV=$(losetup --find --show "$SCRATCH/disk")
    echo "$LOOP_DEV" >"$LOOP_NOTE"
    make_base_and_qcow2
    "$IMG" create -q -f fvd -b "$SCRATCH/base.raw" -F raw "$LOOP_DEV" 64M
    "$IMG" convert -n -f raw -O fvd full.raw "$LOOP_DEV"
    "$IMG" check "$LOOP_DEV" || fail "check on the loop device"
    "$IMG" convert -O raw "$LOOP_DEV" out.raw
    identical full.raw out.raw
    losetup -d "$LOOP_DEV"
    rm -f "$LOOP_NOTE"
}
check "compact FVD on a loop device" loop_device

verify_workload() {
    make_base_and_qcow2
    "$IMG" create -q -f fvd -b base.raw top.fvd
    "$BENCH" --name=fvd --filename=top.fvd --rw=randrw --bs=4k --iodepth=16 \
        --size=64M --number_ios=20000 --verify=crc32c --randseed=7 >bench.out ||
        fail "coblk-bench --verify: $(cat bench.out)"
    "$IMG" check top.fvd || fail "check after the workload"
}
check "coblk-bench randrw --verify=crc32c on an FVD overlay" verify_workload

first_writes() {
    # --ba=64k: one 4 KiB write at the start of each 64 KiB block, each
    # block once: every write is a first write, and every block ends up in
    # the image.
    "$IMG" create -q -f fvd empty.fvd 32M
    "$BENCH" --name=alloc --filename=empty.fvd --rw=randwrite --bs=4k --ba=64k --iodepth=32 \
        --direct=1 --output-format=json >alloc.json || fail "coblk-bench: $(cat alloc.json)"
    python3 - <<'EOF2' || fail "not one write per block"
import json
j = json.load(open("alloc.json"))["jobs"][0]
assert j["write"]["total_ios"] == 512, j["write"]["total_ios"]
EOF2
    "$IMG" info empty.fvd | grep -q "blocks-in-image: 512" || fail "info: $("$IMG" info empty.fvd)"
}
check "coblk-bench --ba=64k writes each FVD block once" first_writes

damaged() {
    "$IMG" create -q -f fvd small.fvd 8M
    # Two chunks claiming physical chunk 0: table entries 0 and 1 = 0.
    local table
    table=$(python3 -c 'import struct;b=open("small.fvd","rb").read(4096);print(struct.unpack_from("<Q",b,72)[0])')
    printf '\0\0\0\0\0\0\0\0' | dd of=small.fvd bs=1 seek="$table" conv=notrunc status=none
    local rc=0
    "$IMG" check small.fvd >check.out 2>&1 || rc=$?
    [[ $rc -eq 2 ]] || fail "check exited $rc, expected 2: $(cat check.out)"
    grep -q "FVD table: chunk 1" check.out || fail "check did not name the table: $(cat check.out)"
    rc=0
    "$IMG" info small.fvd >info.out 2>&1 || rc=$?
    [[ $rc -eq 1 ]] || fail "info opened a corrupt image"
    grep -q "FVD table" info.out || fail "info did not name the table"
}
check "check and info refuse a table with two chunks in one place" damaged

# Builds base1.raw, base2.raw (base1 changed in places and longer), and the
# same overlay as top.qcow2 (qemu) and top.fvd (coblk, written through a
# sparse delta so that only the overlay's own ranges are written; convert
# writes whole 4 KiB runs, so the writes are 4 KiB-aligned).
make_rebase_pair() {
    qemu-img create -q -f raw base1.raw 16M
    qemu-io -f raw -c 'write -P 0x11 0 16M' base1.raw >/dev/null
    cp base1.raw base2.raw
    qemu-io -f raw -c 'write -P 0x22 2M 1M' -c 'write -z 9M 100k' base2.raw >/dev/null
    qemu-img create -q -f qcow2 -b base1.raw -F raw top.qcow2
    qemu-img create -q -f raw delta.raw 16M
    local w
    for w in "0x33 $((5 * MiB)) 65536" "0x44 $((2 * MiB + 4096)) 8192" "0x55 $((12 * MiB + 4096)) 12288"; do
        # shellcheck disable=SC2086
        set -- $w
        qemu-io -f qcow2 -c "write -P $1 $2 $3" top.qcow2 >/dev/null
        qemu-io -f raw -c "write -P $1 $2 $3" delta.raw >/dev/null
    done
    "$IMG" create -q -f fvd -o block_size=4k -b base1.raw -F raw top.fvd
    "$IMG" convert -n --target-is-zero -f raw -O fvd delta.raw top.fvd
}

rebase() {
    make_rebase_pair
    qemu-img convert -f qcow2 -O raw top.qcow2 before.raw
    "$IMG" rebase -b base2.raw -F raw top.fvd
    qemu-img rebase -q -f qcow2 -b base2.raw -F raw top.qcow2
    "$IMG" info top.fvd | grep -q "backing file: base2.raw" || fail "info: base is not base2.raw"
    "$IMG" convert -O raw top.fvd after.raw
    identical before.raw after.raw
    qemu-img compare -f qcow2 -F raw top.qcow2 after.raw >/dev/null || fail "qemu's rebase differs"
    "$IMG" rebase -b "" top.fvd
    "$IMG" info top.fvd | grep -q "backing file" && fail "the base is still there"
    "$IMG" convert -O raw top.fvd flat.raw
    identical before.raw flat.raw
}
check "rebase (safe, then to no base) keeps the content, as qemu-img rebase does" rebase

commit() {
    make_rebase_pair
    qemu-img convert -f qcow2 -O raw top.qcow2 want.raw
    "$IMG" commit top.fvd | grep -q "Image committed." || fail "commit printed no success"
    identical want.raw base1.raw
    "$IMG" convert -O raw top.fvd still.raw
    identical want.raw still.raw
}
check "commit writes the overlay's data into its base" commit

# coblk-img snapshot on an FVD file: the snapshot must hold what a copy
# taken just before it holds (converted to raw by coblk-img, compared by
# qemu-img); the image goes on with the new writes; -a brings the copy back;
# -d merges it into the image without changing what the image reads.
snapshot() {
    qemu-img create -q -f raw src.raw 16M
    qemu-io -f raw -c 'write -P 0x3c 0 3M' -c "write -P 0x4d $((9 * MiB + 11)) 2M" \
        src.raw >/dev/null
    "$IMG" convert -O fvd -o block_size=16k src.raw vm.fvd
    "$IMG" convert -O raw vm.fvd before.raw
    "$IMG" snapshot -c first vm.fvd
    "$IMG" snapshot -l vm.fvd | grep -q "first" || fail "snapshot -l does not list 'first'"
    "$IMG" info vm.fvd | grep -q "first" || fail "info does not list 'first'"
    [[ -f vm.fvd.snap-first ]] || fail "no snapshot file vm.fvd.snap-first"
    # new data after the snapshot, through coblk-img (convert -n onto the image)
    qemu-io -f raw -c 'write -P 0x5e 1M 1M' src.raw >/dev/null
    "$IMG" convert -n -f raw -O fvd src.raw vm.fvd
    "$IMG" convert -O raw vm.fvd.snap-first snap.raw
    identical before.raw snap.raw
    "$IMG" convert -O raw vm.fvd now.raw
    identical src.raw now.raw
    if "$IMG" snapshot -c bad/name vm.fvd 2>err.txt; then fail "a name with '/' was taken"; fi
    grep -q "'/'" err.txt || fail "the refusal does not name '/': $(cat err.txt)"
    "$IMG" snapshot -a first vm.fvd
    "$IMG" convert -O raw vm.fvd reverted.raw
    identical before.raw reverted.raw
    "$IMG" check vm.fvd || fail "check vm.fvd after revert"
    "$IMG" snapshot -d first vm.fvd
    [[ ! -e vm.fvd.snap-first ]] || fail "snapshot -d left vm.fvd.snap-first"
    if "$IMG" snapshot -l vm.fvd | grep -q first; then fail "'first' still listed"; fi
    "$IMG" convert -O raw vm.fvd merged.raw
    identical before.raw merged.raw
}
check "coblk-img snapshot -c/-l/-a/-d on an FVD file: the snapshot equals a copy taken before" snapshot

echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
