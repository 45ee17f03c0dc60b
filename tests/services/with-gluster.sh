#!/usr/bin/env bash
# with-gluster.sh CMD ARGS...
# Start the test GlusterFS server (gluster-up.sh), run CMD with
#   COBLK_GLUSTER_URI=gluster://127.0.0.1/VOLUME  and  COBLK_GLUSTER_STATE=<state dir>
# in its environment, stop the server (gluster-down.sh) however CMD ends, and
# exit with CMD's status (1 if the server does not start, 128+N on signal N).
# Takes the same environment as gluster-up.sh.
# shellcheck disable=SC2317  # cleanup and on_signal run from traps
set -uo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
export COBLK_GLUSTER_STATE=${COBLK_GLUSTER_STATE:-/var/tmp/coblk-gluster}

child=
cleanup() {
    "$here/gluster-down.sh" || echo "with-gluster: gluster-down.sh failed" >&2
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

COBLK_GLUSTER_URI=$("$here/gluster-up.sh") || exit 1
export COBLK_GLUSTER_URI

"$@" <&0 &
child=$!
wait "$child"
exit $?
