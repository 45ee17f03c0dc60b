#!/usr/bin/env bash
# with-ceph.sh CMD ARGS...
# Start the test Ceph cluster (ceph-up.sh), run CMD with
#   COBLK_CEPH_CONF=<state dir>/ceph.conf, COBLK_CEPH_POOL=<pool> and
#   COBLK_CEPH_STATE=<state dir>
# in its environment, stop the cluster (ceph-down.sh) however CMD ends, and
# exit with CMD's status (1 if the cluster does not start, 128+N on signal N).
# Takes the same environment as ceph-up.sh. When CMD fails, it prints the
# cluster's health and PG states to stderr, and with COBLK_CEPH_KEEP_LOGS=DIR
# copies the daemons' logs to DIR before they are removed.
#
# The cluster's mon ports are fixed, so runs of this script take turns: each
# holds /run/lock/coblk-ceph.lock from start to stop, waiting up to
# COBLK_CEPH_LOCK_WAIT seconds [3600] for it. When COBLK_CEPH_CONF is already
# set (an outer with-ceph.sh, or a cluster you started yourself), it just runs
# CMD and leaves the cluster alone. It nests with with-gluster.sh either way
# round.
# shellcheck disable=SC2317  # cleanup and on_signal run from traps
set -uo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi
if [[ -n ${COBLK_CEPH_CONF:-} ]]; then
    exec "$@"
fi
here=$(cd "$(dirname "$0")" && pwd)
export COBLK_CEPH_STATE=${COBLK_CEPH_STATE:-/var/tmp/coblk-ceph}
export COBLK_CEPH_POOL=${COBLK_CEPH_POOL:-rbd}

lock=/run/lock/coblk-ceph.lock
mkdir -p /run/lock
exec 8>>"$lock" || exit 1
if ! flock -n 8; then
    echo "with-ceph: another with-ceph.sh is using the cluster; waiting for $lock" >&2
    flock -w "${COBLK_CEPH_LOCK_WAIT:-3600}" 8 ||
        { echo "with-ceph: ERROR: timed out waiting for $lock" >&2; exit 1; }
fi

child=
# report STATUS: CMD failed; show how the cluster stands (a wedged PG or a
# down OSD shows here) and keep its logs in COBLK_CEPH_KEEP_LOGS if set,
# before cleanup removes them. Each query is bounded: the cluster may not answer.
report() {
    echo "with-ceph: the command failed (status $1); the cluster as it stands:" >&2
    timeout 20 ceph -c "$COBLK_CEPH_CONF" --connect-timeout 15 health detail >&2 2>&1 ||
        echo "with-ceph: 'ceph health detail' did not answer" >&2
    timeout 20 ceph -c "$COBLK_CEPH_CONF" --connect-timeout 15 pg stat >&2 2>&1 ||
        echo "with-ceph: 'ceph pg stat' did not answer" >&2
    if [[ -n ${COBLK_CEPH_KEEP_LOGS:-} ]]; then
        mkdir -p "$COBLK_CEPH_KEEP_LOGS" && cp -a "$COBLK_CEPH_STATE/log/." "$COBLK_CEPH_KEEP_LOGS/" &&
            echo "with-ceph: the daemons' logs are kept in $COBLK_CEPH_KEEP_LOGS" >&2
    fi
}
cleanup() {
    "$here/ceph-down.sh" 8>&- || echo "with-ceph: ceph-down.sh failed" >&2
}
on_signal() {
    # CMD runs in the background (so that signals reach us at once), where
    # bash makes it ignore SIGINT: pass the signal on as SIGTERM.
    if [[ -n $child ]]; then
        kill -TERM "$child" 2>/dev/null
        wait "$child"
    fi
    exit $((128 + $1))
}
trap cleanup EXIT
trap 'on_signal 1' HUP
trap 'on_signal 2' INT
trap 'on_signal 15' TERM

# The lock's fd is closed for the daemons and CMD, so that nothing they leave
# running keeps holding it.
COBLK_CEPH_CONF=$("$here/ceph-up.sh" 8>&-) || exit 1
export COBLK_CEPH_CONF

"$@" <&0 8>&- &
child=$!
wait "$child"
status=$?
((status == 0)) || report "$status"
exit $status
