#!/usr/bin/env bash
# Start a throw-away single-node GlusterFS server on 127.0.0.1 for coblk's
# tests: glusterd (run by hand, no systemd) and one volume with one brick.
# Installs glusterfs-server/glusterfs-client with apt-get when missing.
# Idempotent: with the server up it re-uses it and only fixes what is missing.
#
# stdout: exactly one line, "gluster://127.0.0.1/VOLUME".
# stderr: progress.  Exit status 1 on any failure.  Must run as root.
#
# Environment (see README.md):
#   COBLK_GLUSTER_STATE    state dir                         [/var/tmp/coblk-gluster]
#   COBLK_GLUSTER_VOLUME   volume name                       [coblk]
#   COBLK_GLUSTER_OPTIONS  "key=value ..." set when the volume is created,
#                          e.g. "performance.write-behind=off"            [none]
#   COBLK_GLUSTER_WAIT     seconds to wait for the server to be ready     [60]
#
# Stop it with gluster-down.sh (same COBLK_GLUSTER_STATE).
set -euo pipefail

STATE=${COBLK_GLUSTER_STATE:-/var/tmp/coblk-gluster}
VOL=${COBLK_GLUSTER_VOLUME:-coblk}
OPTIONS=${COBLK_GLUSTER_OPTIONS:-}
WAIT=${COBLK_GLUSTER_WAIT:-60}
ADDR=127.0.0.1
# Fixed: glusterd starts bricks with "-s <brick host>" and no port, so a brick
# fetches its volfile from port 24007. Hence one such server per machine.
PORT=24007
# The CLI refuses 127.0.0.1 and localhost as a brick host; 127.1 is the same address.
BRICK_HOST=127.1
BRICK=$STATE/bricks/$VOL
SOCK=$STATE/run/glusterd.socket

log() { echo "gluster-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $STATE == /?* ]] || die "COBLK_GLUSTER_STATE must be an absolute path other than / (got '$STATE')"
[[ $VOL =~ ^[A-Za-z0-9_-]+$ ]] || die "bad volume name '$VOL'"
[[ $WAIT =~ ^[0-9]+$ ]] || die "COBLK_GLUSTER_WAIT must be a number of seconds (got '$WAIT')"
for kv in $OPTIONS; do
    [[ $kv == ?*=?* ]] || die "COBLK_GLUSTER_OPTIONS: '$kv' is not key=value"
done
[[ $(id -u) == 0 ]] || die "must run as root (glusterd and its bricks need root)"

# --- packages --------------------------------------------------------------
PATH=$PATH:/usr/sbin:/sbin # glusterd and gluster live in /usr/sbin
if ! command -v glusterd >/dev/null || ! command -v gluster >/dev/null; then
    log "installing glusterfs-server glusterfs-client"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y glusterfs-server glusterfs-client >&2 ||
        { apt-get update >&2 && apt-get install -y glusterfs-server glusterfs-client >&2; } ||
        die "apt-get could not install glusterfs-server glusterfs-client"
    if ! command -v glusterd >/dev/null || ! command -v gluster >/dev/null; then
        die "glusterd or gluster still not found after installing"
    fi
fi

t0=${EPOCHREALTIME/./}
deadline=$((SECONDS + WAIT))
# wait_until WHAT CMD...: poll CMD every 0.1 s until it succeeds or time runs out
wait_until() {
    local what=$1
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) ||
            die "timed out after ${WAIT}s waiting for $what (logs: $STATE/log, /var/log/glusterfs/bricks)"
        sleep 0.1
    done
}
# ours PID ARG: PID is alive and one of its arguments is exactly ARG
ours() {
    [[ $1 =~ ^[0-9]+$ ]] && tr '\0' '\n' 2>/dev/null <"/proc/$1/cmdline" | grep -xF -- "$2" >/dev/null
}
# cli ARGS...: the gluster CLI, talking to our glusterd, for no longer than the time left
cli() {
    local left=$((deadline - SECONDS))
    ((left > 0)) || left=1
    gluster --mode=script --glusterd-sock="$SOCK" --log-file="$STATE/log/cli.log" --timeout="$left" "$@"
}
brick_xml() { cli volume status "$VOL" "$BRICK_HOST:$BRICK" --xml 2>/dev/null | tr -d ' \n'; }
brick_online() { brick_xml | grep "<status>1</status>" >/dev/null; }
tcp_open() { (exec 3<>"/dev/tcp/$ADDR/$1") 2>/dev/null; }

# --- state dir ---------------------------------------------------------------
if [[ -d $STATE && ! -e $STATE/.coblk-gluster && -n $(ls -A "$STATE") ]]; then
    die "$STATE is not empty and was not made by gluster-up.sh; not using it"
fi
mkdir -p "$STATE"/{lib,run,log,bricks}
touch "$STATE/.coblk-gluster"
# Dirs outside the state dir that we (or glusterd, for the volume) may create;
# those that are new are recorded at the end for gluster-down.sh to remove.
outside_dirs=(/var/log/glusterfs/snaps/"$VOL" /var/log/glusterfs/gfproxy/"$VOL" /var/log/glusterfs/bricks)
new_dirs=()
for d in "${outside_dirs[@]}"; do [[ -d $d ]] || new_dirs+=("$d"); done
record_new_dirs() {
    for d in "${new_dirs[@]}"; do [[ ! -d $d ]] || echo "$d" >>"$STATE/created-dirs"; done
}
trap record_new_dirs EXIT # also when failing half-way
mkdir -p /var/log/glusterfs/bricks # bricks log there whatever the state dir is

cat >"$STATE/glusterd.vol" <<EOF
volume management
    type mgmt/glusterd
    option working-directory $STATE/lib
    option run-directory $STATE/run
    option glusterd-sockfile $SOCK
    option transport-type socket
    option transport.address-family inet
    option transport.socket.bind-address $ADDR
    option transport.socket.listen-port $PORT
    option rpc-auth-allow-insecure on
    option ping-timeout 0
    option event-threads 1
end-volume
EOF

# --- glusterd ----------------------------------------------------------------
gpid=$(cat "$STATE/glusterd.pid" 2>/dev/null || true)
fresh=0
if ours "$gpid" "$STATE/glusterd.vol"; then
    log "re-using glusterd (pid $gpid)"
else
    if tcp_open "$PORT"; then
        die "$ADDR:$PORT is in use by a process gluster-up.sh did not start for $STATE (see: ss -ltnp 'sport = :$PORT')"
    fi
    rm -f "$STATE/glusterd.pid" "$SOCK"
    log "starting glusterd on $ADDR:$PORT (state in $STATE)"
    glusterd -f "$STATE/glusterd.vol" -p "$STATE/glusterd.pid" -l "$STATE/log/glusterd.log" ||
        die "glusterd failed to start; see $STATE/log/glusterd.log"
    gpid=$(cat "$STATE/glusterd.pid")
    fresh=1
fi
wait_until "glusterd to answer on $SOCK" cli volume list

# --- volume ------------------------------------------------------------------
volumes=$(cli volume list 2>/dev/null) || die "gluster volume list failed; see $STATE/log/glusterd.log"
if grep -xF -- "$VOL" <<<"$volumes" >/dev/null; then
    created_with=$(cat "$STATE/options-$VOL" 2>/dev/null || true)
    if [[ -n $OPTIONS && $OPTIONS != "$created_with" ]]; then
        die "volume $VOL exists with options '$created_with', not '$OPTIONS'; run gluster-down.sh first"
    fi
else
    rm -rf "$BRICK" # a brick left from an earlier volume carries its volume id
    mkdir -p "$BRICK"
    log "creating volume $VOL on $BRICK_HOST:$BRICK"
    cli volume create "$VOL" "$BRICK_HOST:$BRICK" force >&2 ||
        die "volume create failed; see $STATE/log/glusterd.log"
    for kv in $OPTIONS; do
        if ! cli volume set "$VOL" "${kv%%=*}" "${kv#*=}" >&2; then
            cli volume delete "$VOL" >&2 || true
            die "could not set volume option '$kv'"
        fi
    done
    printf '%s' "$OPTIONS" >"$STATE/options-$VOL"
fi

if [[ $(cli volume info "$VOL" | sed -n 's/^Status: //p') != Started ]]; then
    log "starting volume $VOL"
    cli volume start "$VOL" >&2 || die "volume start failed; see $STATE/log/glusterd.log"
elif ! brick_online; then
    # A freshly started glusterd restarts the bricks of started volumes by
    # itself; give it a few seconds before forcing it.
    if [[ $fresh == 1 ]]; then
        for _ in {1..20}; do brick_online && break; sleep 0.1; done
    fi
    if ! brick_online; then
        log "brick of $VOL is offline: volume start force"
        cli volume start "$VOL" force >&2 || die "volume start force failed; see $STATE/log/glusterd.log"
    fi
fi

# --- readiness -----------------------------------------------------------------
wait_until "the brick of $VOL to come online" brick_online
xml=$(brick_xml)
bport=$(sed -n 's|.*<port>\([0-9]*\)</port>.*|\1|p' <<<"$xml")
bpid=$(sed -n 's|.*<pid>\([0-9]*\)</pid>.*|\1|p' <<<"$xml")
[[ -n $bport && -n $bpid ]] || die "could not read the brick's port and pid from 'volume status'"
ours "$bpid" "$BRICK" || die "brick pid $bpid is not a brick of $BRICK"
wait_until "the brick to accept TCP on $ADDR:$bport" tcp_open "$bport"
wait_until "glusterd to accept TCP on $ADDR:$PORT" tcp_open "$PORT"

echo "$bpid" >"$STATE/brick-$VOL.pid"
# The brick's unix socket and log live outside the state dir: remember them
# so that gluster-down.sh can remove them even if the brick has died.
tr '\0' '\n' <"/proc/$bpid/cmdline" | awk 'take { print; take = 0 } $0 == "-S" || $0 == "-l" { take = 1 }' \
    >>"$STATE/brick-$VOL.files"
sort -u -o "$STATE/brick-$VOL.files" "$STATE/brick-$VOL.files"

ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
log "ready in $((ms / 1000)).$(printf %03d $((ms % 1000)))s: glusterd pid $gpid port $PORT, brick pid $bpid port $bport"
echo "gluster://$ADDR/$VOL"
