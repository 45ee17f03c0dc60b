#!/usr/bin/env bash
# Start a throw-away single-node Ceph cluster on 127.0.0.1 for coblk's tests:
# one mon, one mgr (no Python modules), one OSD on memstore (RAM only), cephx,
# and an RBD pool of size 1. Every daemon is started by hand (no systemd) and
# writes its PID under the state dir; ceph-down.sh stops exactly those.
# Installs the ceph packages with apt-get when missing (COBLK_CEPH_APT=0: only
# name them and fail).
#
# Idempotent: a cluster of this state dir that is up and answers is re-used.
# Anything else (a daemon died, a half-built state dir) is stopped and rebuilt
# from scratch: a memstore OSD cannot restart, its data lives in its RAM.
#
# stdout: exactly one line, the path of the cluster's ceph.conf.
# stderr: progress.  Exit status 1 on any failure.  Must run as root.
#
# Environment (see README.md):
#   COBLK_CEPH_STATE     state dir                                [/var/tmp/coblk-ceph]
#   COBLK_CEPH_POOL      RBD pool name                            [rbd]
#   COBLK_CEPH_MON_PORT  mon port (msgr2); msgr1 is MON_PORT+1    [3300]
#   COBLK_CEPH_STORE_GB  memstore capacity in GiB                 [4]
#   COBLK_CEPH_WAIT      seconds the start may take               [120]
#   COBLK_CEPH_APT       1: apt-get install missing packages      [1]
set -euo pipefail

STATE=${COBLK_CEPH_STATE:-/var/tmp/coblk-ceph}
POOL=${COBLK_CEPH_POOL:-rbd}
MON_PORT=${COBLK_CEPH_MON_PORT:-3300}
STORE_GB=${COBLK_CEPH_STORE_GB:-4}
WAIT=${COBLK_CEPH_WAIT:-120}
APT=${COBLK_CEPH_APT:-1}
ADDR=127.0.0.1
CONF=$STATE/ceph.conf

log() { echo "ceph-up: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $STATE == /?* ]] || die "COBLK_CEPH_STATE must be an absolute path other than / (got '$STATE')"
[[ $POOL =~ ^[A-Za-z0-9_.-]+$ ]] || die "bad pool name '$POOL'"
[[ $MON_PORT =~ ^[0-9]+$ ]] && ((MON_PORT > 0 && MON_PORT < 65535)) ||
    die "COBLK_CEPH_MON_PORT must be a port number (got '$MON_PORT')"
[[ $STORE_GB =~ ^[0-9]+$ ]] && ((STORE_GB > 0)) || die "COBLK_CEPH_STORE_GB must be a positive number (got '$STORE_GB')"
[[ $WAIT =~ ^[0-9]+$ ]] || die "COBLK_CEPH_WAIT must be a number of seconds (got '$WAIT')"
[[ $(id -u) == 0 ]] || die "must run as root (the daemons and apt-get need it)"
MON_V1_PORT=$((MON_PORT + 1))

# --- packages ------------------------------------------------------------------
# program:package pairs; the packages are Debian 12's (Ceph 16.2).
missing=()
for pair in ceph-mon:ceph-mon ceph-osd:ceph-osd ceph-mgr:ceph-mgr ceph:ceph-common \
    rbd:ceph-common ceph-authtool:ceph-common monmaptool:ceph-base uuidgen:uuid-runtime; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    [[ $APT == 1 ]] || die "missing packages: ${missing[*]} (COBLK_CEPH_APT=1 installs them)"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
        { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; } ||
        die "apt-get could not install ${missing[*]}"
fi

t0=${EPOCHREALTIME/./}
deadline=$((SECONDS + WAIT))
left() { local l=$((deadline - SECONDS)); echo $((l > 0 ? l : 1)); }
# wait_until WHAT CMD...: poll CMD every 0.2 s until it succeeds or time runs out
wait_until() {
    local what=$1
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out after ${WAIT}s waiting for $what (logs: $STATE/log)"
        sleep 0.2
    done
}
# The CLIs, bounded by the time left: a dead or frozen daemon cannot hang us.
cephc() { timeout "$(left)" ceph -c "$CONF" --connect-timeout "$(left)" "$@"; }
rbdc() { timeout "$(left)" rbd -c "$CONF" "$@"; }
# ours PIDFILE: the PID in it is a live ceph daemon using this state dir's conf
ours() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline" | grep -xF -- "$CONF" >/dev/null
}

# --- re-use ----------------------------------------------------------------------
if [[ -d $STATE && ! -e $STATE/.coblk-ceph && -n $(ls -A "$STATE") ]]; then
    die "$STATE is not empty and was not made by ceph-up.sh; not using it"
fi
settings="pool=$POOL mon=$MON_PORT gb=$STORE_GB"
if [[ -e $STATE/ready && $(cat "$STATE/ready") == "$settings" ]] &&
    ours "$STATE/run/mon.a.pid" && ours "$STATE/run/mgr.x.pid" && ours "$STATE/run/osd.0.pid" &&
    timeout 30 rbd -c "$CONF" --rados-osd-op-timeout 10 --rados-mon-op-timeout 10 ls "$POOL" >/dev/null 2>&1; then
    log "re-using the cluster in $STATE"
    echo "$CONF"
    exit 0
fi
if [[ -e $STATE/.coblk-ceph ]]; then
    log "no healthy cluster in $STATE: stopping what is left and rebuilding"
    COBLK_CEPH_STATE=$STATE "$(dirname "$0")/ceph-down.sh" >&2 || die "ceph-down.sh failed"
fi
for p in "$MON_PORT" "$MON_V1_PORT"; do
    if (exec 3<>"/dev/tcp/$ADDR/$p") 2>/dev/null; then
        die "$ADDR:$p is in use by a process ceph-up.sh did not start for $STATE (set COBLK_CEPH_MON_PORT)"
    fi
done
mkdir -p "$STATE"/{run,log,mon.a,mgr.x,osd.0}
touch "$STATE/.coblk-ceph"

# --- ceph.conf -------------------------------------------------------------------
fsid=$(uuidgen)
osd_uuid=$(uuidgen)
# The mgr runs without Python modules (30 MB instead of 300): Pacific then
# reports its always-on modules as failed, a warning muted below.
no_modules=$(find /usr/share/ceph/mgr -mindepth 1 -maxdepth 1 -type d -printf '%f ' 2>/dev/null || true)
cat >"$CONF" <<EOF
# Written by coblk's tests/services/ceph-up.sh: a throw-away single-node
# cluster on loopback. Removed by ceph-down.sh.
[global]
fsid = $fsid
mon host = [v2:$ADDR:$MON_PORT,v1:$ADDR:$MON_V1_PORT]
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = $STATE/keyring
run dir = $STATE/run
crash dir = $STATE/crash
log file = $STATE/log/\$name.log
admin socket = $STATE/run/\$name.asok
pid file = $STATE/run/\$name.pid
ms bind ipv6 = false
ms bind port min = 6800
ms bind port max = 7300
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
mgr stats period = 1
mon mgr digest period = 1
# Clients give up on a dead cluster after 30 s instead of 300.
client mount timeout = 30

[mon]
mon data = $STATE/mon.\$id
public addr = $ADDR
mon cluster log file = $STATE/log/cluster.log
# Map updates every 0.1 s instead of 1 s: boot and pool creation are seconds faster.
paxos propose interval = 0.1

[mgr]
mgr data = $STATE/mgr.\$id
keyring = $STATE/mgr.\$id/keyring
public addr = $ADDR
mgr disabled modules = $no_modules

[osd]
osd data = $STATE/osd.\$id
keyring = $STATE/osd.\$id/keyring
public addr = $ADDR
cluster addr = $ADDR
osd objectstore = memstore
memstore device bytes = $((STORE_GB << 30))
# Page-set memstore is 2-3x faster than the default buffer list.
memstore page set = true
osd crush update on start = true
# A read lease of 120 s instead of 16 (0.8 x osd heartbeat grace). Pacific's
# OSD never re-checks a size-1 PG that went laggy: if the OSD was paused
# past a PG's lease (a test freezes it with SIGSTOP) and handles a client op
# before it renews the lease, that PG parks every later op for good (Ceph
# tracker 61650; Debian 12's 16.2.15 has it). Renewals come every half
# lease, so the pause must now last over 60 s. With one OSD no peer ever
# waits out a lease, so a long one costs nothing here.
osd pool default read lease ratio = 6
EOF

# --- keys: all made now and put in the mon's store at mkfs --------------------------
{
    ceph-authtool "$STATE/keyring" --create-keyring --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *'
    ceph-authtool "$STATE/mon.keyring" --create-keyring --gen-key -n mon. --cap mon 'allow *'
    ceph-authtool "$STATE/osd.0/keyring" --create-keyring --gen-key -n osd.0 \
        --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *'
    ceph-authtool "$STATE/mgr.x/keyring" --create-keyring --gen-key -n mgr.x \
        --cap mon 'allow profile mgr' --cap mds 'allow *' --cap osd 'allow *'
    for k in "$STATE/keyring" "$STATE/osd.0/keyring" "$STATE/mgr.x/keyring"; do
        ceph-authtool "$STATE/mon.keyring" --import-keyring "$k"
    done
} >/dev/null || die "ceph-authtool failed"
chmod 600 "$STATE/keyring" "$STATE/mon.keyring" "$STATE"/*/keyring

# --- daemons ------------------------------------------------------------------------
monmaptool --create --clobber --fsid "$fsid" \
    --addv a "[v2:$ADDR:$MON_PORT,v1:$ADDR:$MON_V1_PORT]" "$STATE/monmap" >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$STATE/monmap" --keyring "$STATE/mon.keyring" \
    2>>"$STATE/log/mon.a.stderr" || die "ceph-mon --mkfs failed (see $STATE/log)"
ceph-mon -c "$CONF" -i a 2>>"$STATE/log/mon.a.stderr" || die "ceph-mon failed to start (see $STATE/log)"
wait_until "the mon to form a quorum" cephc mon stat
cephc health mute MGR_MODULE_ERROR --sticky >/dev/null 2>&1 || log "warning: could not mute MGR_MODULE_ERROR"
ceph-mgr -c "$CONF" -i x 2>>"$STATE/log/mgr.x.stderr" || die "ceph-mgr failed to start (see $STATE/log)"

osd_id=$(cephc osd new "$osd_uuid") || die "ceph osd new failed"
[[ $osd_id == 0 ]] || die "expected OSD id 0, got '$osd_id'"
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$STATE/log/osd.0.mkfs.log" 2>&1 ||
    die "ceph-osd --mkfs failed (see $STATE/log/osd.0.mkfs.log)"
ceph-osd -c "$CONF" -i 0 2>>"$STATE/log/osd.0.stderr" || die "ceph-osd failed to start (see $STATE/log)"
osd_up() { cephc osd dump --format json | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(o["osd"] == 0 and o["up"] == 1 and o["in"] == 1 for o in d["osds"]) else 1)'; }
wait_until "osd.0 to be up and in" osd_up

# --- pool ---------------------------------------------------------------------------
out=$(cephc osd pool create "$POOL" 8 8 replicated 2>&1) || die "ceph osd pool create $POOL: $out"
rbdc pool init "$POOL" >&2 || die "rbd pool init $POOL failed"
probe=ceph-up-probe-$$
rbdc create --size 4M "$POOL/$probe" >&2 || die "rbd create in pool $POOL failed (see $STATE/log)"
rbdc rm --no-progress "$POOL/$probe" >&2 || die "rbd rm in pool $POOL failed"
for d in mon.a mgr.x osd.0; do
    ours "$STATE/run/$d.pid" || die "$d has no live pid in $STATE/run/$d.pid"
done
echo "$settings" >"$STATE/ready"

ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
log "ready in $((ms / 1000)).$(printf %03d $((ms % 1000)))s: mon $ADDR:$MON_PORT pid $(cat "$STATE/run/mon.a.pid"), osd.0 pid $(cat "$STATE/run/osd.0.pid"), pool $POOL"
echo "$CONF"
