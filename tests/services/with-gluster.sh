#!/usr/bin/env bash
# with-gluster.sh CMD ARGS...
# Start the test GlusterFS server (gluster-up.sh), run CMD with
#   COBLK_GLUSTER_URI=gluster://127.0.0.1/VOLUME, COBLK_GLUSTER_STATE=<state dir>
#   and COBLK_GLUSTER_CTL=<this dir>/gluster-ctl.sh
# in its environment, stop the server (gluster-down.sh) however CMD ends, and
# exit with CMD's status (1 if the server does not start, 128+N on signal N).
# Takes the same environment as gluster-up.sh.
#
# There is one such server per machine (port 24007), so runs of this script
# take turns: each holds /run/lock/coblk-gluster.lock from start to stop,
# waiting up to COBLK_GLUSTER_LOCK_WAIT seconds [3600] for it. When
# COBLK_GLUSTER_URI is already set (an outer with-gluster.sh, or a server you
# started yourself), it just runs CMD and leaves the server alone.
# shellcheck disable=SC2317  # cleanup and on_signal run from traps
set -uo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi
if [[ -n ${COBLK_GLUSTER_URI:-} ]]; then
    exec "$@"
fi
here=$(cd "$(dirname "$0")" && pwd)
export COBLK_GLUSTER_STATE=${COBLK_GLUSTER_STATE:-/var/tmp/coblk-gluster}
export COBLK_GLUSTER_CTL=$here/gluster-ctl.sh

lock=/run/lock/coblk-gluster.lock
mkdir -p /run/lock
exec 9>>"$lock" || exit 1
if ! flock -n 9; then
    echo "with-gluster: another with-gluster.sh is using the server; waiting for $lock" >&2
    flock -w "${COBLK_GLUSTER_LOCK_WAIT:-3600}" 9 ||
        { echo "with-gluster: ERROR: timed out waiting for $lock" >&2; exit 1; }
fi

child=
cleanup() {
    "$here/gluster-down.sh" 9>&- || echo "with-gluster: gluster-down.sh failed" >&2
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

# The lock's fd is closed for the server and CMD, so that nothing they leave
# running keeps holding it.
COBLK_GLUSTER_URI=$("$here/gluster-up.sh" 9>&-) || exit 1
export COBLK_GLUSTER_URI

"$@" <&0 9>&- &
child=$!
wait "$child"
exit $?
