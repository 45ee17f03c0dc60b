#!/usr/bin/env bash
# ceph-pause-check.sh [ROUNDS [PAUSE_S [UP_SCRIPT]]]
# Checks that the test cluster survives its OSD being paused: starts a fresh
# cluster with UP_SCRIPT [ceph-up.sh] in its own state dir and mon port (so
# it can run beside the suite's), then ROUNDS [8] times pauses the OSD with
# SIGSTOP for PAUSE_S [18] seconds while `rbd bench` keeps 16 writes in
# flight, resumes it, and sends 8 `rados put`s (10 s each at most). Prints,
# each round, how many puts were answered and the PG states; stops at the
# first round with an unanswered put. Stops the cluster at the end.
#
# Why: Pacific's OSD leaves a size-1 PG `laggy` for good when it handles a
# client op after its read lease ran out during a pause (Ceph tracker 61650);
# ceph-up.sh sets a long lease so that the suite's OSD freeze cannot get
# there. Pass an older ceph-up.sh as UP_SCRIPT to see the wedge.
#
# Exit status: 0 when every round's puts were answered, 1 otherwise.
# Environment: COBLK_CEPH_PAUSE_STATE [/var/tmp/coblk-ceph-pause],
# COBLK_CEPH_PAUSE_PORT [3400]. Must run as root.
# shellcheck disable=SC2317  # finish runs from the EXIT trap
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-8}
pause=${2:-18}
up=${3:-$here/ceph-up.sh}
[[ $rounds =~ ^[0-9]+$ && $pause =~ ^[0-9]+$ ]] || { echo "usage: $0 [ROUNDS [PAUSE_S [UP_SCRIPT]]]" >&2; exit 2; }
export COBLK_CEPH_STATE=${COBLK_CEPH_PAUSE_STATE:-/var/tmp/coblk-ceph-pause}
export COBLK_CEPH_MON_PORT=${COBLK_CEPH_PAUSE_PORT:-3400}

conf=$("$up") || exit 1
bench=
osd=
# However we leave: the OSD running again, the load stopped, the cluster down.
finish() {
    [[ -n $osd ]] && kill -CONT "$osd" 2>/dev/null
    [[ -n $bench ]] && kill -KILL "$bench" 2>/dev/null && wait "$bench" 2>/dev/null
    "$here/ceph-down.sh"
}
trap finish EXIT
ceph_() { timeout 20 ceph -c "$conf" --connect-timeout 15 "$@"; }
echo "read lease ratio: $(ceph_ daemon osd.0 config get osd_pool_default_read_lease_ratio |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["osd_pool_default_read_lease_ratio"])')"
# The OSD logs at debug_osd 10 during the check: that slows its op threads
# and makes the wedge far more likely with a short lease (5 of 5 clusters
# with the 16 s lease wedged within 2 rounds; without it, 1 round in 9).
ceph_ tell osd.0 config set debug_osd 10 >/dev/null || exit 1
timeout 30 rbd -c "$conf" create --size 64M rbd/pause-check || exit 1
osd=$(cat "$COBLK_CEPH_STATE/run/osd.0.pid")

status=0
for ((i = 1; i <= rounds; i++)); do
    # Stopped with SIGKILL: on SIGTERM rbd waits for its writes, for ever on
    # a wedged PG.
    rbd -c "$conf" bench --io-type write --io-size 4K --io-threads 16 \
        --io-total 4G --io-pattern rand rbd/pause-check >/dev/null 2>&1 &
    bench=$!
    sleep 2
    kill -STOP "$osd"
    sleep "$pause"
    kill -CONT "$osd"
    sleep 2
    ok=0
    for k in {1..8}; do
        timeout -k 5 10 rados -c "$conf" -p rbd put "pause-$i-$k" /etc/hostname 2>/dev/null && ok=$((ok + 1))
    done
    echo "round $i: $ok/8 puts answered; $(ceph_ pg stat 2>/dev/null | cut -d';' -f1)"
    kill -KILL "$bench" 2>/dev/null
    wait "$bench" 2>/dev/null
    bench=
    if ((ok < 8)); then
        status=1
        break
    fi
done
exit $status
