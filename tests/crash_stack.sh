#!/usr/bin/env bash
# The stack tests/main.cpp prints on a crash: a test thread that aborts
# must end the runner with SIGABRT, after Catch2 names the test case and the
# runner prints the crashing thread's stack with the aborting function in it.
# Usage: crash_stack.sh PATH/TO/coblk-tests
set -uo pipefail
tests=$1
err=$(mktemp)
trap 'rm -f "$err"' EXIT
"$tests" '[.crash-stack]' >/dev/null 2>"$err"
rc=$?
ok=1
[[ $rc == 134 ]] || { echo "FAIL: exit status $rc, expected 134 (SIGABRT)"; ok=0; }
grep -q "fatal signal SIGABRT; the crashing thread's stack:" "$err" ||
  { echo "FAIL: no stack header on stderr"; ok=0; }
grep -q "coblk_tests_crash_on_purpose" "$err" ||
  { echo "FAIL: the aborting function is not named in the stack"; ok=0; }
if [[ $ok == 0 ]]; then
  sed 's/^/    stderr: /' "$err"
  exit 1
fi
echo "ok: SIGABRT; the printed stack names coblk_tests_crash_on_purpose"
