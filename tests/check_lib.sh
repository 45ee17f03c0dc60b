# shellcheck shell=bash
# Helpers for the shell tests (sourced, not run): each check runs in a
# subshell under `set -e` and fails with `fail`. The last command's output is
# kept in the files named by OUT_FILE and ERR_FILE, which the sourcing script
# sets.

# fail MESSAGE: ends the check with "FAIL: MESSAGE" on stderr.
fail() {
    echo "    FAIL: $*" >&2
    exit 1
}

# expect_exit RC CMD...: runs CMD, stdout in $OUT_FILE and stderr in
# $ERR_FILE, and fails unless it exits with RC.
expect_exit() {
    local want=$1
    shift
    local rc=0
    "$@" >"$OUT_FILE" 2>"$ERR_FILE" || rc=$?
    if [[ $rc -ne $want ]]; then
        echo "    command: $*" >&2
        sed 's/^/    stdout: /' "$OUT_FILE" | head -40 >&2
        sed 's/^/    stderr: /' "$ERR_FILE" >&2
        fail "exit status $rc, expected $want"
    fi
}

# run_expect RC CMD...: expect_exit, under the name the scripts use (a script
# may redefine it, as bench_cli.sh does for coblk-bench's arguments).
run_expect() { expect_exit "$@"; }

# stderr_has TEXT: the last command printed TEXT (a fixed string) on stderr.
stderr_has() {
    grep -qF -- "$1" "$ERR_FILE" || { sed 's/^/    stderr: /' "$ERR_FILE" >&2; fail "stderr lacks '$1'"; }
}

# json_check EXPR...: each python expression holds for the JSON document `d`
# read from $OUT_FILE (e.g. "d['jobs'][0]['read']['iops'] > 0").
json_check() {
    python3 - "$OUT_FILE" "$@" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for expr in sys.argv[2:]:
    if not eval(expr):
        print(f"    FAIL: JSON check failed: {expr}", file=sys.stderr)
        print(json.dumps(d["jobs"][0] if d.get("jobs") else d, indent=1)[:3000], file=sys.stderr)
        sys.exit(1)
PY
}
