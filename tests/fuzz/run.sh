#!/usr/bin/env bash
# Builds the FVD metadata fuzz target with clang's libFuzzer (plus ASan and
# UBSan) and runs it for a bounded time from the seed corpus, which it
# regenerates from the current format code. Any crash fails the run and
# leaves the input in the work directory.
#
# Usage: tests/fuzz/run.sh [SECONDS]   (default 60)
# Prints the run's final statistics line ("Done N runs in S second(s)").
set -euo pipefail
SECONDS_TO_RUN=${1:-60}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/coblk-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

CXX=${CXX_FUZZ:-clang++-14}
command -v "$CXX" >/dev/null || { echo "FAIL: $CXX is needed (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 1; }
SRCS=("$ROOT/formats/fvd_format.cpp" "$ROOT/engine/crc32c.cpp")
FLAGS=(-std=c++20 -O1 -g -I"$ROOT" -D_GNU_SOURCE)

"$CXX" "${FLAGS[@]}" -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    "$ROOT/tests/fuzz/fvd_metadata_fuzz.cpp" "${SRCS[@]}" -lfmt -o "$WORK/fvd_metadata_fuzz"
"$CXX" "${FLAGS[@]}" "$ROOT/tests/fuzz/make_corpus.cpp" "${SRCS[@]}" -lfmt -o "$WORK/make_corpus"
mkdir -p "$WORK/corpus"
"$WORK/make_corpus" "$WORK/corpus"

cd "$WORK"
# -rss_limit_mb bounds memory (ASan's quarantine counts too).
"$WORK/fvd_metadata_fuzz" -max_total_time="$SECONDS_TO_RUN" -rss_limit_mb=2048 -timeout=10 \
    -max_len=65536 -print_final_stats=1 "$WORK/corpus" 2>"$WORK/fuzz.log" || {
    tail -40 "$WORK/fuzz.log" >&2
    echo "FAIL: the fuzz target crashed; the input is in $WORK (kept)" >&2
    trap - EXIT
    exit 1
}
grep -E "^Done|stat::number_of_executed_units|stat::peak_rss_mb" "$WORK/fuzz.log" || true
