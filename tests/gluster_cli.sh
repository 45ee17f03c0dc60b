#!/usr/bin/env bash
# coblk-img and coblk-bench on a real GlusterFS volume, as a user runs them:
# raw images created, inspected, converted and compared with gluster URIs
# (checked against qemu-img, a separate client), convert -n onto an existing
# image and refused onto a missing one, a mixed random workload with
# verify=crc32c at iodepth 32, and a byte corrupted in the brick's own file
# caught by verify.
#
# Usage: gluster_cli.sh COBLK_IMG COBLK_BENCH
# Needs COBLK_GLUSTER_URI and COBLK_GLUSTER_CTL (run it under
# tests/services/with-gluster.sh). Prints "ok N - ..." per check and
# "N passed, M failed"; exits 1 on any failure.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 COBLK_IMG COBLK_BENCH" >&2
    exit 2
fi
IMG=$(realpath "$1")
BENCH=$(realpath "$2")
for t in "$IMG" "$BENCH"; do
    [[ -x $t ]] || { echo "FAIL: '$t' is not an executable" >&2; exit 1; }
done
: "${COBLK_GLUSTER_URI:?run under tests/services/with-gluster.sh, which sets COBLK_GLUSTER_URI}"
: "${COBLK_GLUSTER_CTL:?run under tests/services/with-gluster.sh, which sets COBLK_GLUSTER_CTL}"
command -v qemu-img >/dev/null || { echo "FAIL: qemu-img is needed" >&2; exit 1; }

URI=${COBLK_GLUSTER_URI%/}
PREFIX=coblk-cli-$$
BRICK=$("$COBLK_GLUSTER_CTL" brick-dir)
SCRATCH=$(mktemp -d "${TMPDIR:-/var/tmp}/coblk-gluster-cli.XXXXXX")
OUT_FILE=$SCRATCH/out
ERR_FILE=$SCRATCH/err
cleanup() {
    rm -rf "$SCRATCH"
    rm -f "$BRICK/$PREFIX"-* # the test's images, straight from the brick
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# shellcheck source=tests/check_lib.sh
source "$(dirname "$0")/check_lib.sh"

# create and info, checked against qemu-img info (another client of the volume).
check_1() {
    local u=$URI/$PREFIX-a.img
    run_expect 0 "$IMG" create -f raw "$u" 16M
    run_expect 0 "$IMG" info --output=json "$u"
    json_check "d['format'] == 'raw'" "d['virtual-size'] == 16 << 20" "d['protocol'] == 'gluster'"
    run_expect 0 qemu-img info --output=json "$u"
    json_check "d['virtual-size'] == 16 << 20"
    [[ $(stat -c %s "$BRICK/$PREFIX-a.img") -eq $((16 << 20)) ]] || fail "the brick's file is not 16 MiB"
    # A volume the server does not have: the error names it.
    run_expect 1 "$IMG" create -f raw "${URI%/*}/coblk-no-such-volume/x.img" 1M
    stderr_has "volume 'coblk-no-such-volume' on server"
}

# convert local -> gluster -> local, compared by coblk-img, qemu-img and cmp.
check_2() {
    local src=$SCRATCH/src.raw u=$URI/$PREFIX-b.img back=$SCRATCH/back.raw
    head -c $((5 << 20)) /dev/urandom >"$src"
    # Some zeros in the middle, which convert may leave as holes.
    dd if=/dev/zero of="$src" bs=64k seek=20 count=10 conv=notrunc status=none
    run_expect 0 "$IMG" convert -O raw "$src" "$u"
    run_expect 0 qemu-img compare -f raw -F raw "$src" "$u"
    run_expect 0 "$IMG" compare "$src" "$u"
    cmp "$src" "$BRICK/$PREFIX-b.img" || fail "the brick's file differs from the source"
    run_expect 0 "$IMG" convert -O raw "$u" "$back"
    cmp "$src" "$back" || fail "converted back, the image differs"
    # The comparison can fail: one byte differs in the image on the volume.
    printf 'X' | dd of="$BRICK/$PREFIX-b.img" bs=1 seek=$((3 << 20)) conv=notrunc status=none
    run_expect 1 "$IMG" compare "$src" "$u"
    grep -qF "offset $((3 << 20))" "$OUT_FILE" || { cat "$OUT_FILE" >&2; fail "compare does not name offset $((3 << 20))"; }
}

# convert -n: onto an existing image (kept, overwritten), refused onto a missing one.
check_3() {
    local src=$SCRATCH/n.raw u=$URI/$PREFIX-c.img
    head -c $((1 << 20)) /dev/urandom >"$src"
    run_expect 0 "$IMG" create -f raw "$u" 1M
    run_expect 0 "$IMG" convert -n -O raw "$src" "$u"
    run_expect 0 qemu-img compare -f raw -F raw "$src" "$u"
    run_expect 1 "$IMG" convert -n -O raw "$src" "$URI/$PREFIX-missing.img"
    stderr_has "/$PREFIX-missing.img"
    stderr_has "No such file or directory"
    [[ ! -e $BRICK/$PREFIX-missing.img ]] || fail "convert -n created the missing image"
}

# A mixed random workload with verify=crc32c at iodepth 32, then every block
# written and read back, then a byte corrupted in the brick's file is caught.
check_4() {
    local u=$URI/$PREFIX-v.img
    run_expect 0 "$IMG" create -f raw "$u" 32M
    run_expect 0 "$BENCH" --name=mixed --filename="$u" --rw=randrw --rwmixread=50 --bs=4k \
        --iodepth=32 --verify=crc32c --output-format=json
    json_check "d['jobs'][0]['error'] == 0" "d['jobs'][0]['read']['total_ios'] > 1000" \
        "d['jobs'][0]['write']['total_ios'] > 1000" \
        "d['jobs'][0]['read']['total_ios'] + d['jobs'][0]['write']['total_ios'] == 8192"
    run_expect 0 "$BENCH" --name=all --filename="$u" --rw=randwrite --bs=4k --iodepth=32 \
        --verify=crc32c --output-format=json
    json_check "d['jobs'][0]['error'] == 0" "d['jobs'][0]['write']['total_ios'] == 8192" \
        "d['jobs'][0]['read']['total_ios'] == 8192"
    # Another process (a new connection) verifies every block.
    run_expect 0 "$BENCH" --name=again --filename="$u" --rw=randread --bs=4k --iodepth=32 \
        --verify=crc32c --output-format=json
    json_check "d['jobs'][0]['read']['total_ios'] == 8192"
    # One byte changed behind the volume's back, in block 1000.
    printf 'X' | dd of="$BRICK/$PREFIX-v.img" bs=1 seek=$((1000 * 4096 + 77)) conv=notrunc status=none
    run_expect 1 "$BENCH" --name=bad --filename="$u" --rw=randread --bs=4k --iodepth=32 \
        --verify=crc32c --output-format=json
    stderr_has "bad: verify error at offset $((1000 * 4096)): crc32c mismatch"
}

names=(
    "create and info on a gluster URI match qemu-img; a missing volume is named"
    "convert local -> gluster -> local; compare agrees with qemu-img and catches a byte"
    "convert -n onto an existing gluster image, refused onto a missing one"
    "randrw verify=crc32c at iodepth 32, then a corrupted brick byte is caught"
)
passed=0 failed=0
for i in "${!names[@]}"; do
    n=$((i + 1))
    if (check_$n); then
        echo "ok $n - ${names[$i]}"
        passed=$((passed + 1))
    else
        echo "not ok $n - ${names[$i]}"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
