#!/usr/bin/env bash
# gluster-ctl.sh COMMAND [ARGS...]
# Drives the server that gluster-up.sh started (same COBLK_GLUSTER_STATE and
# COBLK_GLUSTER_VOLUME) for fault tests: freezes, kills and restarts its
# processes by the PIDs recorded in the state dir, after checking that each
# PID's command line belongs to this state dir (never by name), and changes
# volume options.
#
# Commands:
#   glusterd-pid            print glusterd's PID
#   brick-pid               print the brick's PID
#   brick-dir               print the brick's directory (the volume's files on disk)
#   freeze-glusterd         SIGSTOP glusterd         thaw-glusterd   SIGCONT it
#   freeze-brick            SIGSTOP the brick        thaw-brick      SIGCONT it
#   stop-glusterd           SIGTERM glusterd and wait until it is gone (the brick keeps running)
#   start-glusterd          start glusterd again and wait until it answers
#   kill-brick              SIGKILL the brick and wait until it is gone
#   restart-brick           `volume start VOL force`, wait until the brick is online, record its PID
#   set KEY VALUE           `volume set VOL KEY VALUE`
#   get KEY                 print the volume option's value
#   reset KEY               `volume reset VOL KEY`
#   heal                    thaw everything, start glusterd and the brick if they are gone
#
# Every command is bounded (COBLK_GLUSTER_WAIT seconds, default 60). Exit
# status 0 on success, 1 with a message on stderr otherwise.
set -euo pipefail

STATE=${COBLK_GLUSTER_STATE:-/var/tmp/coblk-gluster}
VOL=${COBLK_GLUSTER_VOLUME:-coblk}
WAIT=${COBLK_GLUSTER_WAIT:-60}
BRICK_HOST=127.1
BRICK=$STATE/bricks/$VOL
SOCK=$STATE/run/glusterd.socket
PATH=$PATH:/usr/sbin:/sbin

log() { echo "gluster-ctl: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $# -ge 1 ]] || die "usage: $0 COMMAND [ARGS...] (see the comment at the top)"
[[ -e $STATE/.coblk-gluster ]] || die "$STATE is not a state dir of gluster-up.sh (is the server up?)"
deadline=$((SECONDS + WAIT))

# ours PID ARG: PID is alive and one of its arguments is exactly ARG
ours() {
    [[ $1 =~ ^[0-9]+$ ]] && tr '\0' '\n' 2>/dev/null <"/proc/$1/cmdline" | grep -xF -- "$2" >/dev/null
}
# gone PID: no such process, not even a zombie (glusterd takes a zombie
# brick for a running one and will not restart it)
gone() { [[ ! -e /proc/$1 ]]; }
# stopped PID: PID is in the stopped state (SIGSTOP)
stopped() { grep -q '^State:.*T' "/proc/$1/status" 2>/dev/null; }
wait_until() {
    local what=$1
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${WAIT}s waiting for $what"
        sleep 0.1
    done
}
cli() {
    local left=$((deadline - SECONDS))
    ((left > 0)) || left=1
    gluster --mode=script --glusterd-sock="$SOCK" --log-file="$STATE/log/cli.log" --timeout="$left" "$@"
}
glusterd_pid() {
    local p
    p=$(cat "$STATE/glusterd.pid" 2>/dev/null || true)
    ours "$p" "$STATE/glusterd.vol" || return 1
    echo "$p"
}
# The brick's PID: the one gluster-up.sh or restart-brick recorded, else glusterd's pidfile.
brick_pid() {
    local p f
    for f in "$STATE/brick-$VOL.pid" "$STATE"/run/vols/"$VOL"/*.pid; do
        [[ -e $f ]] || continue
        p=$(cat "$f")
        if ours "$p" "$BRICK"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}
brick_online() { cli volume status "$VOL" "$BRICK_HOST:$BRICK" --xml 2>/dev/null | tr -d ' \n' | grep -q '<status>1</status>'; }
glusterd_answers() { cli volume list; }
is_stopped() { stopped "$1"; }
not_stopped() { ! stopped "$1"; }

# signal_and_wait SIG PID NAME PREDICATE: send SIG to PID, wait until PREDICATE PID holds
signal_and_wait() {
    [[ -n $2 ]] || exit 1 # need_* has said why
    kill -"$1" "$2"
    wait_until "$3 ($2) after SIG$1" "$4" "$2"
}
need_glusterd() { glusterd_pid || die "glusterd of $STATE is not running"; }
need_brick() { brick_pid || die "the brick of $VOL ($BRICK) is not running"; }

cmd=$1
shift
case $cmd in
glusterd-pid) need_glusterd ;;
brick-pid) need_brick ;;
brick-dir) echo "$BRICK" ;;
freeze-glusterd) signal_and_wait STOP "$(need_glusterd)" glusterd is_stopped ;;
thaw-glusterd) signal_and_wait CONT "$(need_glusterd)" glusterd not_stopped ;;
freeze-brick) signal_and_wait STOP "$(need_brick)" "the brick" is_stopped ;;
thaw-brick) signal_and_wait CONT "$(need_brick)" "the brick" not_stopped ;;
stop-glusterd)
    p=$(need_glusterd)
    kill -CONT "$p"
    kill -TERM "$p"
    wait_until "glusterd ($p) to exit" gone "$p"
    ;;
start-glusterd)
    if p=$(glusterd_pid); then
        log "glusterd already runs (pid $p)"
    else
        rm -f "$STATE/glusterd.pid" "$SOCK"
        # glusterd keeps every fd it inherits for as long as it runs: a
        # caller's pipe (a test runner reading a test's output, reached through
        # any non-CLOEXEC fd of the test process) would never see EOF. Close
        # all but 0-2 and point those at /dev/null.
        (
            for f in "/proc/$BASHPID"/fd/*; do
                n=${f##*/}
                if ((n > 2)); then eval "exec $n>&-"; fi
            done
            exec glusterd -f "$STATE/glusterd.vol" -p "$STATE/glusterd.pid" -l "$STATE/log/glusterd.log" \
                </dev/null >/dev/null 2>&1
        ) ||
            die "glusterd failed to start; see $STATE/log/glusterd.log"
    fi
    wait_until "glusterd to answer on $SOCK" glusterd_answers
    ;;
kill-brick)
    p=$(need_brick)
    kill -KILL "$p"
    wait_until "the brick ($p) to be gone" gone "$p"
    ;;
restart-brick)
    need_glusterd >/dev/null
    cli volume start "$VOL" force >&2 || die "volume start $VOL force failed"
    wait_until "the brick of $VOL to come online" brick_online
    p=$(cli volume status "$VOL" "$BRICK_HOST:$BRICK" --xml | tr -d ' \n' | sed -n 's|.*<pid>\([0-9]*\)</pid>.*|\1|p')
    ours "$p" "$BRICK" || die "volume status names pid '$p', which is not a brick of $BRICK"
    echo "$p" >"$STATE/brick-$VOL.pid"
    # Its socket and log, for gluster-down.sh (as gluster-up.sh records them).
    tr '\0' '\n' <"/proc/$p/cmdline" | awk 'take { print; take = 0 } $0 == "-S" || $0 == "-l" { take = 1 }' \
        >>"$STATE/brick-$VOL.files"
    sort -u -o "$STATE/brick-$VOL.files" "$STATE/brick-$VOL.files"
    ;;
set)
    [[ $# -eq 2 ]] || die "usage: set KEY VALUE"
    cli volume set "$VOL" "$1" "$2" >/dev/null || die "volume set $VOL $1 $2 failed"
    ;;
get)
    [[ $# -eq 1 ]] || die "usage: get KEY"
    out=$(cli volume get "$VOL" "$1") || die "volume get $VOL $1 failed"
    awk -v k="$1" '$1 == k { print $2 }' <<<"$out"
    ;;
reset)
    [[ $# -eq 1 ]] || die "usage: reset KEY"
    cli volume reset "$VOL" "$1" >/dev/null || die "volume reset $VOL $1 failed"
    ;;
heal)
    if p=$(glusterd_pid); then kill -CONT "$p"; fi
    if p=$(brick_pid); then kill -CONT "$p"; fi
    "$0" start-glusterd
    brick_online || "$0" restart-brick
    ;;
*) die "unknown command '$cmd' (see the comment at the top of $0)" ;;
esac
