#!/usr/bin/env bash
# Stop what gluster-up.sh started and remove its state: stop the volumes,
# kill the bricks and glusterd by the PIDs recorded in the state dir (only
# after checking that each PID's command line belongs to this state dir),
# remove the bricks' sockets and logs outside the state dir, then the state
# dir itself. Idempotent: exits 0 when nothing is running.
#
# Environment: COBLK_GLUSTER_STATE  state dir  [/var/tmp/coblk-gluster]
set -euo pipefail

STATE=${COBLK_GLUSTER_STATE:-/var/tmp/coblk-gluster}
SOCK=$STATE/run/glusterd.socket

log() { echo "gluster-down: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $STATE == /?* ]] || die "COBLK_GLUSTER_STATE must be an absolute path other than / (got '$STATE')"
if [[ ! -e $STATE ]]; then
    log "nothing to do ($STATE does not exist)"
    exit 0
fi
[[ -e $STATE/.coblk-gluster ]] || die "$STATE was not made by gluster-up.sh; not touching it"

# ours PID ARG: PID is alive and one of its arguments is exactly ARG
# (a zombie has an empty command line, so it does not count)
ours() {
    [[ $1 =~ ^[0-9]+$ ]] && tr '\0' '\n' 2>/dev/null <"/proc/$1/cmdline" | grep -xF -- "$2" >/dev/null
}
# stop PID ARG NAME: SIGTERM, up to 10 s to exit, then SIGKILL
failed=0
stop() {
    local pid=$1 arg=$2 name=$3
    ours "$pid" "$arg" || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in {1..100}; do ours "$pid" "$arg" || return 0; sleep 0.1; done
    log "$name (pid $pid) ignored SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in {1..50}; do ours "$pid" "$arg" || return 0; sleep 0.1; done
    log "ERROR: $name (pid $pid) is still running"
    failed=1
}

# A test may have left glusterd or a brick frozen (SIGSTOP): thaw ours first.
gpid=$(cat "$STATE/glusterd.pid" 2>/dev/null || true)
bricks=() # "PID VOLUME" of each live brick of ours
for pidfile in "$STATE"/brick-*.pid "$STATE"/run/vols/*/*.pid; do
    [[ -e $pidfile ]] || continue
    case $pidfile in
    "$STATE"/brick-*) vol=${pidfile#"$STATE"/brick-} vol=${vol%.pid} ;;
    *) vol=$(basename "$(dirname "$pidfile")") ;;
    esac
    pid=$(cat "$pidfile")
    if ours "$pid" "$STATE/bricks/$vol"; then
        bricks+=("$pid $vol")
        kill -CONT "$pid" 2>/dev/null || true
    fi
done
if ours "$gpid" "$STATE/glusterd.vol"; then
    kill -CONT "$gpid" 2>/dev/null || true
    G=(gluster --mode=script --glusterd-sock="$SOCK" --log-file="$STATE/log/cli.log" --timeout=30)
    for vol in $("${G[@]}" volume list 2>/dev/null | grep -v '^No volumes' || true); do
        log "stopping volume $vol"
        "${G[@]}" volume stop "$vol" force >&2 || log "volume stop $vol failed; killing its brick"
    done
fi

for b in "${bricks[@]}"; do
    stop "${b% *}" "$STATE/bricks/${b#* }" "brick of ${b#* }"
done
stop "$gpid" "$STATE/glusterd.vol" glusterd
[[ $failed == 0 ]] || die "some processes would not stop; leaving $STATE in place"

# Files and dirs made outside the state dir, as recorded by gluster-up.sh:
# the bricks' unix sockets and logs, and empty log dirs (removed only if empty).
for list in "$STATE"/brick-*.files; do
    [[ -e $list ]] || continue
    while read -r f; do
        case $f in
        /var/run/gluster/*.socket | /run/gluster/*.socket | /var/log/glusterfs/bricks/*.log) rm -f "$f" ;;
        esac
    done <"$list"
done
if [[ -e $STATE/created-dirs ]]; then
    while read -r dir; do rmdir "$dir" 2>/dev/null || true; done <"$STATE/created-dirs"
fi

rm -rf "$STATE"
log "stopped; removed $STATE"
