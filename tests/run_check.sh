# Sourced by the shell tests. run_check N DESCRIPTION FUNCTION runs FUNCTION
# in a subshell with errexit on (not in a condition, where bash would turn
# errexit off), prints "ok N - DESCRIPTION" or "not ok N - DESCRIPTION", and
# counts PASSED and FAILED. A script may define run_check_setup, which is
# called with N first (in the script's own shell).
PASSED=0
FAILED=0
run_check() {
    local n=$1 desc=$2 fn=$3 rc
    if declare -F run_check_setup >/dev/null; then
        run_check_setup "$n"
    fi
    set +e
    (
        set -e
        "$fn"
    )
    rc=$?
    set -e
    if [[ $rc -eq 0 ]]; then
        echo "ok $n - $desc"
        PASSED=$((PASSED + 1))
    else
        echo "not ok $n - $desc"
        FAILED=$((FAILED + 1))
    fi
}
