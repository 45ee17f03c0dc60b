#!/usr/bin/env bash
# coblk without io_uring, as a container with a seccomp profile has it:
# coblk-bench and coblk-img run under no-uring-exec (a seccomp filter that
# fails io_uring_setup with ENOSYS or EPERM), must print the fallback warning
# exactly once per process and produce data that verifies: coblk-bench's
# crc32c verify, and qemu-img compare of coblk-img's output against its
# source as the outside witness. Also COBLK_IO_URING=off/on/bad values.
#
# Usage: no_uring.sh COBLK_BENCH COBLK_IMG NO_URING_EXEC
# Prints "ok N - ..." per check and "N passed, M failed"; exits 1 on failure.
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 COBLK_BENCH COBLK_IMG NO_URING_EXEC" >&2
    exit 2
fi
BENCH=$(realpath "$1")
IMG=$(realpath "$2")
NOURING=$(realpath "$3")
for x in "$BENCH" "$IMG" "$NOURING"; do
    [[ -x $x ]] || { echo "FAIL: '$x' is not an executable" >&2; exit 1; }
done
for p in qemu-img python3; do
    command -v $p >/dev/null || { echo "FAIL: $p is needed" >&2; exit 1; }
done

# /var/tmp rather than /tmp, which may be a tmpfs without O_DIRECT.
SCRATCH=$(mktemp -d "${TMPDIR:-/var/tmp}/coblk-no-uring.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
trap 'exit 130' INT TERM HUP

OUT_FILE=$SCRATCH/out
ERR_FILE=$SCRATCH/err
# shellcheck source=tests/check_lib.sh
source "$(dirname "$0")/check_lib.sh"

WARNING="coblk: io_uring unavailable"

# warned_once REASON: the last command's stderr holds the fallback warning
# exactly once, and it names REASON.
warned_once() {
    local n
    n=$(grep -cF -- "$WARNING" "$ERR_FILE" || true)
    [[ $n -eq 1 ]] || { sed 's/^/    stderr: /' "$ERR_FILE" >&2; fail "the warning appears $n times, not once"; }
    stderr_has "$WARNING ($1"
    stderr_has "using worker threads for file I/O"
}

not_warned() {
    if grep -qF -- "$WARNING" "$ERR_FILE"; then
        sed 's/^/    stderr: /' "$ERR_FILE" >&2
        fail "warned although io_uring is available"
    fi
}

# identical A B: qemu-img, not coblk, says the two raw images are the same.
identical() {
    local out
    out=$(qemu-img compare -f raw -F raw "$1" "$2") || fail "qemu-img compare $1 $2: $out"
    [[ $out == "Images are identical." ]] || fail "qemu-img compare said: $out"
}

# A 24 MiB raw source with data, zeros and holes, written by qemu-io.
SRC=$SCRATCH/src.raw
qemu-img create -q -f raw "$SRC" 24M
qemu-io -f raw -c "write -P 0x5a 0 3M" -c "write -P 0xc3 5M 1M" -c "write -z 7M 1M" \
    -c "write -P 0x11 12345k 4097k" -c "write -P 0x7e 23M 1M" "$SRC" >/dev/null

# bench_under ERRNO FILE: a random read/write job with crc32c verify, two
# jobs (two loops) in one process, under the filter.
bench_under() {
    expect_exit 0 "$NOURING" "$1" "$BENCH" --name=t --filename="$2" --rw=randrw --bs=4k \
        --iodepth=16 --size=16M --numjobs=2 --verify=crc32c --output-format=json
    json_check "all(j['error'] == 0 for j in d['jobs'])" "len(d['jobs']) == 2" \
        "all(j['read']['total_ios'] > 0 and j['write']['total_ios'] > 0 for j in d['jobs'])"
}

check_filter() {
    # The helper refuses what it cannot do, and its filter holds in the child.
    expect_exit 2 "$NOURING" EINVAL true
    expect_exit 0 "$NOURING" ENOSYS true
    expect_exit 0 "$NOURING" EPERM "$NOURING" ENOSYS true
}

# check_errno ERRNO STRERROR
check_errno() {
    local e=$1 why=$2
    local f=$SCRATCH/bench-$e.img
    rm -f "$f"
    bench_under "$e" "$f"
    warned_once "$why from io_uring_setup"
    # Every block written under the filter (O_DIRECT), then read back and
    # verified through io_uring, without it.
    rm -f "$f"
    expect_exit 0 "$NOURING" "$e" "$BENCH" --name=w --filename="$f" --rw=randwrite --bs=4k \
        --iodepth=16 --size=16M --direct=1 --verify=crc32c --output-format=json
    warned_once "$why from io_uring_setup"
    json_check "d['jobs'][0]['error'] == 0" "d['jobs'][0]['write']['total_ios'] == 4096"
    expect_exit 0 "$BENCH" --name=r --filename="$f" --rw=read --bs=4k --size=16M \
        --verify=crc32c --output-format=json
    not_warned
    json_check "d['jobs'][0]['error'] == 0" "d['jobs'][0]['read']['total_ios'] == 4096"

    # raw -> fvd (O_DIRECT) -> raw under the filter; qemu-img is the witness.
    rm -f "$SCRATCH/$e.fvd" "$SCRATCH/$e.raw"
    expect_exit 0 "$NOURING" "$e" "$IMG" convert -f raw -O fvd -t none "$SRC" "$SCRATCH/$e.fvd"
    warned_once "$why from io_uring_setup"
    expect_exit 0 "$NOURING" "$e" "$IMG" convert -O raw -T none "$SCRATCH/$e.fvd" "$SCRATCH/$e.raw"
    warned_once "$why from io_uring_setup"
    identical "$SRC" "$SCRATCH/$e.raw"
    expect_exit 0 "$NOURING" "$e" "$IMG" compare "$SCRATCH/$e.fvd" "$SRC"
    warned_once "$why from io_uring_setup"
    # A difference is still seen (exit 1, as qemu-img's).
    qemu-io -f raw -c "write -P 0x01 20M 512" "$SCRATCH/$e.raw" >/dev/null
    expect_exit 1 "$NOURING" "$e" "$IMG" compare "$SCRATCH/$e.fvd" "$SCRATCH/$e.raw"
}

check_enosys() { check_errno ENOSYS "Function not implemented"; }
check_eperm() { check_errno EPERM "Operation not permitted"; }

check_env() {
    local f=$SCRATCH/env.img
    rm -f "$f"
    # Forced off: the same warning, naming the variable; the data verifies.
    COBLK_IO_URING=off expect_exit 0 "$BENCH" --name=t --filename="$f" --rw=randrw --bs=4k \
        --iodepth=16 --size=8M --numjobs=2 --verify=crc32c --output-format=json
    warned_once "COBLK_IO_URING=off"
    json_check "all(j['error'] == 0 for j in d['jobs'])"
    expect_exit 0 "$IMG" convert -O raw "$SRC" "$SCRATCH/env.raw"
    not_warned
    identical "$SRC" "$SCRATCH/env.raw"
    # A value that means nothing is refused, naming it.
    COBLK_IO_URING=maybe expect_exit 2 "$IMG" compare "$SRC" "$SCRATCH/env.raw"
    stderr_has "COBLK_IO_URING='maybe'"
    # "on" requires io_uring: under the filter it fails, saying why.
    COBLK_IO_URING=on expect_exit 2 "$NOURING" EPERM "$IMG" compare "$SRC" "$SCRATCH/env.raw"
    stderr_has "io_uring_setup"
    stderr_has "Operation not permitted"
}

source "$(dirname "$0")/run_check.sh"

run_check 1 "no-uring-exec: io_uring_setup fails under its filter, usage errors refused" check_filter
run_check 2 "seccomp ENOSYS: bench verifies, convert/compare match qemu-img, one warning" check_enosys
run_check 3 "seccomp EPERM: bench verifies, convert/compare match qemu-img, one warning" check_eperm
run_check 4 "COBLK_IO_URING=off, a bad value, and =on without io_uring" check_env

echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
