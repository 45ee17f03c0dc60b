#!/usr/bin/env bash
# Interoperability of coblk-img with tools nobody here wrote: images written
# by coblk-img must read back identically through qemu-img/qemu-io, images
# written by qemu must read back identically through coblk-img, in every
# cache mode and on a real block device (a loop device, when root).
#
# Usage: interop_img.sh COBLK_IMG [SCRATCH_DIR]
# Prints "ok N - ..." per check and "N passed, M failed"; exits 1 on failure.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 COBLK_IMG [SCRATCH_DIR]" >&2
    exit 2
fi
COBLK_IMG=$(realpath "$1")
if [[ ! -x $COBLK_IMG ]]; then
    echo "FAIL: '$1' is not an executable" >&2
    exit 1
fi
for tool in qemu-img qemu-io python3 truncate dd cmp; do
    if ! command -v "$tool" >/dev/null; then
        echo "FAIL: '$tool' is needed and not installed" >&2
        exit 1
    fi
done

OWN_SCRATCH=0
ALL_PASSED=0 # set when every check ran and passed
if [[ $# -eq 2 ]]; then
    SCRATCH=$2
    mkdir -p "$SCRATCH"
else
    # /var/tmp rather than /tmp, which may be a tmpfs without O_DIRECT.
    SCRATCH=$(mktemp -d "${TMPDIR:-/var/tmp}/coblk-interop.XXXXXX")
    OWN_SCRATCH=1
fi
SCRATCH=$(realpath "$SCRATCH")
# Loop devices attached by check 6 are listed here ("DEVICE BACKING_FILE"),
# so that the exit trap can detach them whatever happened.
LOOPS_FILE=$SCRATCH/attached-loops

MiB=$((1024 * 1024))

cleanup() {
    if [[ -f $LOOPS_FILE ]]; then
        local dev backing
        while read -r dev backing; do
            # Only while it is still ours: the number may have been reused.
            if [[ $(losetup -n -O BACK-FILE "$dev" 2>/dev/null) == "$backing" ]]; then
                losetup -d "$dev" || true
            fi
        done <"$LOOPS_FILE"
        rm -f "$LOOPS_FILE"
    fi
    # Our own directory goes; in the caller's, our files go unless a check
    # failed (they are then kept for a look).
    if [[ $OWN_SCRATCH -eq 1 ]]; then
        rm -rf "$SCRATCH"
    elif [[ $ALL_PASSED -eq 1 ]]; then
        rm -f "$SCRATCH"/c[0-9]* "$SCRATCH"/check-*.out "$SCRATCH"/check-*.err
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# --- helpers (used inside checks, which run in subshells under set -e) ---

# fail, run_expect RC CMD... (stdout in $OUT_FILE, stderr in $ERR_FILE)
# shellcheck source=tests/check_lib.sh
source "$(dirname "$0")/check_lib.sh"

# expect_output TEXT: the last run_expect printed exactly TEXT on stdout.
expect_output() {
    local got
    got=$(cat "$OUT_FILE")
    [[ $got == "$1" ]] || fail "stdout was '$got', expected '$1'"
}

# qemu_read_pattern IMG PATTERN OFF LEN: qemu-io verifies that IMG (raw)
# holds PATTERN over [OFF, OFF+LEN).
qemu_read_pattern() {
    run_expect 0 qemu-io -f raw -c "read -P $2 $3 $4" "$1"
    if grep -q "Pattern verification failed" "$OUT_FILE"; then
        fail "qemu-io: pattern $2 not found at $3+$4 in $1"
    fi
}

# qemu_compare A B: qemu-img (not coblk) says both raw images are identical.
qemu_compare() {
    run_expect 0 qemu-img compare -f raw -F raw "$1" "$2"
    expect_output "Images are identical."
}

# random_at FILE OFF LEN: writes LEN random bytes at byte OFF of FILE.
random_at() {
    head -c "$3" /dev/urandom | dd of="$1" bs=64K seek="$2" oflag=seek_bytes iflag=fullblock \
        conv=notrunc status=none
}

# byte_at FILE OFF HEX: sets the byte at OFF to the byte 0xHEX.
byte_at() {
    printf '%b' "\\x$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# virtual_size JSON_FILE: the virtual-size field of `info --output=json`.
virtual_size() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtual-size"])' "$1"
}

# qemu_patterned IMG SIZE: a raw image written by qemu-io: a few patterns
# at scattered offsets (aligned and not), holes everywhere else.
qemu_patterned() {
    run_expect 0 qemu-img create -f raw -q "$1" "$2"
    run_expect 0 qemu-io -f raw \
        -c 'write -P 0x11 0 64k' \
        -c 'write -P 0x22 1M 3M' \
        -c 'write -P 0x33 300M 1M' \
        -c "write -P 0x44 $((511 * MiB + 12345)) 100000" \
        -c 'write -P 0x55 700M 4k' \
        -c 'write -P 0x66 1023M 1M' \
        "$1"
}

# --- the checks ---

check_1() {
    # A sparse source with random data at aligned and unaligned places, a
    # range of explicit zeros and data up to the very end.
    local src=$SCRATCH/c1-src.raw out=$SCRATCH/c1-a.img
    rm -f "$src" "$out"
    truncate -s 64M "$src"
    random_at "$src" 0 $((1 * MiB))
    random_at "$src" $((5 * MiB + 12288)) $((300 * 1024))
    random_at "$src" $((9 * MiB + 777)) 1000
    head -c $((4 * MiB)) /dev/zero | dd of="$src" bs=1M seek=12 conv=notrunc status=none
    random_at "$src" $((33 * MiB - 4096)) 8192
    random_at "$src" $((63 * MiB)) $((1 * MiB))

    run_expect 0 "$COBLK_IMG" convert -O raw "$src" "$out"
    qemu_compare "$src" "$out"
    cmp "$src" "$out" || fail "cmp: $src and $out differ"
    # Holes of the source and its explicit zeros read as zeros via qemu-io.
    qemu_read_pattern "$out" 0 20M 8M
    qemu_read_pattern "$out" 0 12M 4M
    # The explicit zeros were left out: the copy stays sparse.
    local used
    used=$(($(stat -c %b "$out") * 512))
    ((used <= 8 * MiB)) || fail "$out uses $used bytes; zero ranges were written"
}

check_2() {
    local q=$SCRATCH/c2-q.img copy=$SCRATCH/c2-copy.img
    rm -f "$q" "$copy"
    run_expect 0 qemu-img create -f raw -q "$q" 64M
    run_expect 0 qemu-io -f raw -c 'write -P 0xab 1M 3M' -c 'write -P 0x5c 40M 64k' "$q"
    run_expect 0 qemu-img convert -f raw -O raw "$q" "$copy"

    run_expect 0 "$COBLK_IMG" compare "$q" "$copy"
    expect_output "Images are identical."
    run_expect 0 "$COBLK_IMG" compare -f raw -F raw "$copy" "$q"
    expect_output "Images are identical."

    # One byte flipped inside the 0x5c data: exactly that offset is reported.
    local off1=$((40 * MiB + 1234))
    byte_at "$copy" "$off1" a3
    run_expect 1 "$COBLK_IMG" compare "$q" "$copy"
    expect_output "Content mismatch at offset $off1!"
    run_expect 1 qemu-img compare -f raw -F raw "$q" "$copy"

    # A byte set in a hole earlier on (data against zeros): the lowest
    # differing offset wins, whichever worker finds what first.
    local off2=$((10 * MiB + 7))
    byte_at "$copy" "$off2" 01
    run_expect 1 "$COBLK_IMG" compare "$q" "$copy"
    expect_output "Content mismatch at offset $off2!"
    run_expect 1 "$COBLK_IMG" compare "$copy" "$q"
    expect_output "Content mismatch at offset $off2!"
    run_expect 1 "$COBLK_IMG" compare -q "$q" "$copy"
    expect_output ""
}

check_3() {
    local src=$SCRATCH/c3-src.img mid=$SCRATCH/c3-mid.img back=$SCRATCH/c3-back.img
    rm -f "$src" "$mid" "$back"
    run_expect 0 qemu-img create -f raw -q "$src" 64M
    run_expect 0 qemu-io -f raw -c 'write -P 0x7e 0 1M' -c "write -P 0x3c $((17 * MiB + 512)) 200k" \
        -c "write -P 0xe7 $((60 * MiB + 1000)) 5000" "$src"
    # Source through O_DIRECT, target through O_DIRECT, and back again.
    run_expect 0 "$COBLK_IMG" convert -T none -t none -O raw "$src" "$mid"
    qemu_compare "$src" "$mid"
    run_expect 0 "$COBLK_IMG" convert -T none -t none -f raw -O raw "$mid" "$back"
    qemu_compare "$src" "$back"
}

check_7() {
    # A size that is no multiple of the sector size: the tail goes through
    # O_DIRECT's alignment fix-ups on both sides, and the size must survive.
    local odd=$SCRATCH/c7-odd.raw odd_copy=$SCRATCH/c7-odd-copy.raw
    rm -f "$odd" "$odd_copy"
    truncate -s $((5 * MiB + 1234)) "$odd"
    random_at "$odd" $((5 * MiB - 1000)) 2234
    random_at "$odd" 100 5000
    run_expect 0 "$COBLK_IMG" convert -T none -t none -O raw "$odd" "$odd_copy"
    [[ $(stat -c %s "$odd_copy") -eq $((5 * MiB + 1234)) ]] ||
        fail "$odd_copy has size $(stat -c %s "$odd_copy"), expected $((5 * MiB + 1234))"
    qemu_compare "$odd" "$odd_copy"
    cmp "$odd" "$odd_copy" || fail "cmp: $odd and $odd_copy differ"
}

check_4() {
    local img=$SCRATCH/c4.img
    rm -f "$img"
    run_expect 0 qemu-img create -f raw -q "$img" 96M
    run_expect 0 qemu-io -f raw -c 'write -P 0x42 4M 1M' "$img"

    # Exit status 2 for every error of compare.
    run_expect 2 "$COBLK_IMG" compare "$img" "$SCRATCH/does-not-exist.img"
    grep -q "does-not-exist.img" "$ERR_FILE" || fail "the error does not name the missing file"
    run_expect 2 "$COBLK_IMG" compare "$SCRATCH/does-not-exist.img" "$img"
    run_expect 2 "$COBLK_IMG" compare "$img"
    run_expect 2 "$COBLK_IMG" compare --no-such-option "$img" "$img"

    # info --output=json is JSON, and agrees with qemu-img on the size.
    run_expect 0 "$COBLK_IMG" info --output=json "$img"
    cp "$OUT_FILE" "$SCRATCH/c4-coblk.json"
    python3 -m json.tool "$SCRATCH/c4-coblk.json" >/dev/null ||
        fail "coblk-img info --output=json is not JSON: $(cat "$SCRATCH/c4-coblk.json")"
    run_expect 0 qemu-img info -f raw --output=json "$img"
    cp "$OUT_FILE" "$SCRATCH/c4-qemu.json"
    local ours theirs
    ours=$(virtual_size "$SCRATCH/c4-coblk.json")
    theirs=$(virtual_size "$SCRATCH/c4-qemu.json")
    [[ $ours == "$theirs" ]] || fail "virtual-size: coblk-img says $ours, qemu-img $theirs"
    [[ $ours == $((96 * MiB)) ]] || fail "virtual-size is $ours, expected $((96 * MiB))"
    python3 - "$SCRATCH/c4-coblk.json" <<'EOF' || fail "info JSON lacks a field or has a wrong one"
import json, sys
info = json.load(open(sys.argv[1]))
assert info["format"] == "raw", info
assert info["filename"].endswith("c4.img"), info
assert info["protocol"] == "file", info
assert info["actual-size"] >= 1024 * 1024, info
EOF
    run_expect 0 "$COBLK_IMG" info "$img"
    grep -qx "virtual size: 96 MiB ($((96 * MiB)) bytes)" "$OUT_FILE" ||
        fail "human info lacks the virtual size line: $(cat "$OUT_FILE")"
}

check_5() {
    local img=$SCRATCH/c5.img wb=$SCRATCH/c5-wb.img dio=$SCRATCH/c5-dio.img
    rm -f "$img" "$wb" "$dio"
    run_expect 0 "$COBLK_IMG" create -f raw "$img" 1G
    run_expect 0 qemu-img info -f raw --output=json "$img"
    [[ $(virtual_size "$OUT_FILE") == $((1024 * MiB)) ]] ||
        fail "qemu-img sees $(virtual_size "$OUT_FILE") bytes in the image coblk-img created"
    run_expect 0 qemu-io -f raw \
        -c 'write -P 0xa1 0 128k' \
        -c "write -P 0xb2 $((100 * MiB + 4096)) 2M" \
        -c "write -P 0xc3 $((511 * MiB + 333)) 70000" \
        -c 'write -P 0xd4 1023M 1M' "$img"

    run_expect 0 "$COBLK_IMG" convert -p -t writeback -T writeback -O raw "$img" "$wb"
    grep -q "100.00/100%" "$ERR_FILE" || fail "-p did not end at 100%: $(cat "$ERR_FILE")"
    qemu_compare "$img" "$wb"
    run_expect 0 "$COBLK_IMG" convert -t none -T none -O raw "$img" "$dio"
    qemu_compare "$img" "$dio"
    qemu_read_pattern "$dio" 0xc3 $((511 * MiB + 333)) 70000
    run_expect 0 "$COBLK_IMG" compare -p "$wb" "$dio"
    expect_output "Images are identical."
}

check_6() {
    local backing=$SCRATCH/c6-loop.raw img=$SCRATCH/c6.img dev
    rm -f "$backing" "$img"
    truncate -s 1G "$backing"
    dev=$(losetup -f --show "$backing") || fail "losetup could not attach $backing"
    echo "$dev $backing" >>"$LOOPS_FILE"
    # Detach when this check's subshell ends, however it ends (the variable
    # is expanded now: the function's locals are gone by then).
    # shellcheck disable=SC2064
    trap "losetup -d '$dev' 2>/dev/null || true" EXIT
    [[ -b $dev ]] || fail "$dev is not a block device"

    qemu_patterned "$img" 1G
    local cache
    for cache in writeback none; do
        # Old data where the image has holes: -n must zero it.
        run_expect 0 qemu-io -f raw -c 'write -P 0xff 8M 1M' -c 'write -P 0xee 900M 64k' "$dev"
        run_expect 0 "$COBLK_IMG" convert -n -t "$cache" -O raw "$img" "$dev"
        qemu_compare "$img" "$dev"
        run_expect 0 "$COBLK_IMG" compare "$img" "$dev"
        expect_output "Images are identical."
        run_expect 0 "$COBLK_IMG" compare -T none "$dev" "$img"
        expect_output "Images are identical."
    done
    # The device's protocol is host_device.
    run_expect 0 "$COBLK_IMG" info --output=json "$dev"
    python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); assert i["protocol"]=="host_device", i; assert i["virtual-size"]==1<<30, i' \
        "$OUT_FILE" || fail "info on $dev: $(cat "$OUT_FILE")"

    losetup -d "$dev"
    trap - EXIT
}

# --- running them ---

source "$(dirname "$0")/run_check.sh"
# Each check's stdout and stderr files.
run_check_setup() {
    OUT_FILE=$SCRATCH/check-$1.out
    ERR_FILE=$SCRATCH/check-$1.err
}

run_check 1 "an image written by coblk-img convert reads identically through qemu" check_1
run_check 2 "an image written by qemu-io reads identically through coblk-img compare" check_2
run_check 3 "convert -t none -T none (O_DIRECT) round trip, checked by qemu-img" check_3
run_check 4 "compare exits 2 on errors; info --output=json agrees with qemu-img" check_4
run_check 5 "1 GiB created by coblk-img, written by qemu-io, converted in both cache modes" check_5
if [[ $(id -u) -eq 0 ]]; then
    run_check 6 "convert -n onto a loop device (host_device), both cache modes" check_6
else
    echo "skip 6 - host_device on a loop device: not running as root (losetup needs root)"
fi
run_check 7 "convert -t none -T none of an image whose size is no multiple of 512" check_7

echo "$PASSED passed, $FAILED failed"
if [[ $FAILED -ne 0 ]]; then
    exit 1
fi
ALL_PASSED=1
