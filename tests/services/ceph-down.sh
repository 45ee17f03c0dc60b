#!/usr/bin/env bash
# Stop what ceph-up.sh started and remove its state: thaw our daemons (a test
# may have frozen one with SIGSTOP), send SIGTERM (SIGKILL after 15 s) to the
# PIDs recorded in the state dir's run/*.pid, each only after checking that
# its command line names this state dir's ceph.conf, then remove the state
# dir. Idempotent: exits 0 when nothing is running.
#
# Environment: COBLK_CEPH_STATE  state dir  [/var/tmp/coblk-ceph]
set -uo pipefail

STATE=${COBLK_CEPH_STATE:-/var/tmp/coblk-ceph}
CONF=$STATE/ceph.conf

log() { echo "ceph-down: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $STATE == /?* ]] || die "COBLK_CEPH_STATE must be an absolute path other than / (got '$STATE')"
if [[ ! -e $STATE ]]; then
    log "nothing to do ($STATE does not exist)"
    exit 0
fi
[[ -e $STATE/.coblk-ceph ]] || die "$STATE was not made by ceph-up.sh; not touching it"

# ours PID: PID is alive, not a zombie, and was started with this state dir's conf
ours() {
    [[ $1 =~ ^[0-9]+$ ]] && tr '\0' '\n' 2>/dev/null <"/proc/$1/cmdline" | grep -xF -- "$CONF" >/dev/null
}

pids=() names=()
# OSD first (it tells the mon it goes down), then mgr, then mon.
for name in osd.0 mgr.x mon.a; do
    pid=$(cat "$STATE/run/$name.pid" 2>/dev/null) || continue
    if ours "$pid"; then
        pids+=("$pid") names+=("$name")
        kill -CONT "$pid" 2>/dev/null || true
    fi
done

failed=0
for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    log "stopping ${names[$i]} (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in {1..150}; do ours "$pid" || continue 2; sleep 0.1; done
    log "${names[$i]} (pid $pid) ignored SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in {1..50}; do ours "$pid" || continue 2; sleep 0.1; done
    log "ERROR: ${names[$i]} (pid $pid) is still running"
    failed=1
done
[[ $failed == 0 ]] || die "some daemons would not stop; leaving $STATE in place"

rm -rf "$STATE"
log "stopped; removed $STATE"
