#!/usr/bin/env bash
# coblk-nbd against NBD clients nobody here wrote: qemu-img, qemu-io, fio's
# nbd engine, nbdinfo and nbdcopy (libnbd-bin), over TCP and a unix socket;
# a raw protocol client for the malformed requests real clients never send;
# read-only exports, several clients at once, SIGTERM while a client writes.
# Every data check compares bytes with cmp, on the image file itself.
# Usage: nbd_interop.sh PATH/TO/coblk-nbd
set -euo pipefail
nbd=$1
for tool in qemu-img qemu-io fio nbdinfo nbdcopy python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (tools/debian-packages.txt)"; exit 1; }
done
dir=$(mktemp -d /var/tmp/coblk-nbd-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server NAME ARGS...: starts coblk-nbd, waits until it says it is
# listening (10 s hang guard); sets $pid and $uri.
start_server() {
  local name=$1; shift
  local args=("$@")
  if [[ " ${args[*]} " == *" -k "* ]]; then
    uri="nbd+unix:///?socket=$dir/$name.sock"
  else
    local port; port=$(free_port)
    args=(-b 127.0.0.1 -p "$port" "${args[@]}")
    uri="nbd://127.0.0.1:$port"
  fi
  "$nbd" "${args[@]}" 2>"$dir/$name.log" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    grep -q '^coblk-nbd: serving' "$dir/$name.log" && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$dir/$name.log"; fail "coblk-nbd $name exited at start"; }
    sleep 0.1
  done
  fail "coblk-nbd $name did not listen within 10 s"
}

# stop_server: SIGTERM, then waits (30 s hang guard); fails unless it exits 0.
stop_server() {
  kill -TERM "$pid"
  for _ in $(seq 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && fail "coblk-nbd did not exit within 30 s of SIGTERM"
  wait "$pid" || fail "coblk-nbd exited with status $?"
}

size=$((64 * 1024 * 1024))
src=$dir/src.img
head -c $size /dev/urandom >"$src"
img=$dir/disk.img
truncate -s $size "$img"

echo "== TCP: nbdinfo, qemu-img convert/compare, qemu-io"
start_server tcp -t -e 4 -f raw "$img"
nbdinfo --json "$uri" >"$dir/info.json"
python3 - "$dir/info.json" $size <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))
e = info["exports"][0]
want = {"export-size": int(sys.argv[2]), "is_read_only": False, "can_flush": True,
        "can_fua": True, "can_trim": True, "can_zero": True}
bad = {k: (e.get(k), v) for k, v in want.items() if e.get(k) != v}
if bad:
    sys.exit(f"nbdinfo reports (got, want): {bad}")
PY
listing=$(nbdinfo --list "$uri")
grep -q 'export=' <<<"$listing" || fail "nbdinfo --list shows no export: $listing"
qemu-img convert -n -f raw -O raw "$src" "$uri"
qemu-img compare -f raw -F raw "$src" "$uri" || fail "qemu-img compare over nbd:// differs"
cmp "$src" "$img" || fail "the image file differs from what qemu-img wrote"
# FUA write, flush, write-zeroes, discard through qemu-io; read back.
qemu-io -f raw "$uri" -c 'write -P 0xab -f 1M 64k' -c 'flush' -c 'write -z 2M 128k' \
  -c 'discard 4M 1M' -c 'read -P 0xab 1M 64k' -c 'read -P 0 2M 128k' >"$dir/qemu-io.out" \
  || { cat "$dir/qemu-io.out"; fail "qemu-io commands failed"; }
grep -q 'Pattern verification failed' "$dir/qemu-io.out" && fail "qemu-io read back wrong data"
python3 - "$img" <<'PY'
import sys
f = open(sys.argv[1], "rb")
f.seek(1 << 20); assert f.read(65536) == b"\xab" * 65536, "FUA write not in the file"
f.seek(2 << 20); assert f.read(131072) == bytes(131072), "write-zeroes not in the file"
f.seek(4 << 20); assert f.read(1 << 20) == bytes(1 << 20), "discarded range not zero"
PY

echo "== fio ioengine=nbd, three clients at once"
fio_pids=()
for i in 0 1 2; do
  fio --name=c$i --ioengine=nbd --uri="$uri" --rw=randwrite --bs=4k --iodepth=8 \
    --offset=$((i * 16))M --size=16M --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
    --output="$dir/fio$i.out" &
  fio_pids+=($!)
done
for p in "${fio_pids[@]}"; do wait "$p" || fail "a fio nbd client failed (see its output)"; done
grep -q 'err= 0' "$dir/fio0.out" || fail "fio reported errors"

echo "== nbdcopy both ways"
nbdcopy "$src" "$uri"
nbdcopy "$uri" "$dir/copy.img"
cmp "$src" "$dir/copy.img" || fail "nbdcopy read back differs"
cmp "$src" "$img" || fail "nbdcopy write: image differs"
stop_server
grep -Eq 'writes \([1-9][0-9]* with FUA\), [1-9][0-9]* flushes, [1-9][0-9]* trims, [1-9][0-9]* write-zeroes' "$dir/tcp.log" \
  || { cat "$dir/tcp.log"; fail "the server did not see FUA writes, flushes, trims and write-zeroes"; }

echo "== unix socket: qemu-img compare, qemu-io, nbdcopy"
start_server unix -k "$dir/unix.sock" -t "$img"
qemu-img compare -f raw -F raw "$src" "$uri" || fail "compare over nbd+unix differs"
qemu-io -f raw "$uri" -c 'write -P 0x5c 0 4k' -c 'read -P 0x5c 0 4k' >"$dir/qio2.out" \
  || fail "qemu-io over nbd+unix failed"
grep -q 'Pattern verification failed' "$dir/qio2.out" && fail "qemu-io read back wrong data"
nbdcopy "$uri" "$dir/copy2.img"
cmp "$img" "$dir/copy2.img" || fail "nbdcopy over nbd+unix differs"

echo "== malformed requests on a raw connection"
python3 - "$dir/unix.sock" $size <<'PY'
import socket, struct, sys
path, size = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX); s.connect(path); s.settimeout(10)
def rd(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise SystemExit(f"server closed the connection after {len(b)}/{n} bytes")
        b += c
    return b
magic, opt, flags = struct.unpack(">QQH", rd(18))
assert magic == 0x4e42444d41474943 and opt == 0x49484156454F5054 and flags & 1
s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
IHAVEOPT = 0x49484156454F5054
def option(o, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, o, len(data)) + data)
def opt_reply():
    m, o, t, n = struct.unpack(">QIII", rd(20)); assert m == 0x3e889045565a9
    return o, t, rd(n)
option(99); assert opt_reply()[1] == 0x80000001, "unknown option not ERR_UNSUP"
option(8); assert opt_reply()[1] == 0x80000001, "structured reply not ERR_UNSUP"
option(7, struct.pack(">I", 500) + b"x"); assert opt_reply()[1] == 0x80000003, "bad GO lengths"
option(6, struct.pack(">I", 3) + b"foo" + struct.pack(">H", 0)); assert opt_reply()[1] == 0x80000006
option(3, b"junk"); assert opt_reply()[1] == 0x80000003, "LIST with data not ERR_INVALID"
option(7, struct.pack(">I", 0) + struct.pack(">HH", 1, 3))
types = []
while True:
    o, t, d = opt_reply()
    if t == 1: break
    assert t == 3; types.append(struct.unpack(">H", d[:2])[0])
    if types[-1] == 0: assert struct.unpack(">Q", d[2:10])[0] == size
assert types == [0, 3], types
def req(t, off, n, flags=0, payload=b"", h=7):
    s.sendall(struct.pack(">IHHQQI", 0x25609513, flags, t, h, off, n) + payload)
def reply(h=7):
    m, err, hh = struct.unpack(">IIQ", rd(16)); assert m == 0x67446698 and hh == h
    return err
req(0, size - 512, 1024); assert reply() == 22, "read past the end not EINVAL"
req(0, 2**64 - 1, 2); assert reply() == 22, "overflowing read not EINVAL"
req(1, size, 4096, payload=b"z" * 4096); assert reply() == 28, "write past end not ENOSPC"
req(42, 0, 0); assert reply() == 22, "unknown command not EINVAL"
req(0, 0, 4096, flags=0x80); assert reply() == 22, "unknown flag not EINVAL"
req(0, 64 << 20 , 0); assert reply() == 0, "empty read at the end refused"
req(4, size - 4096, 8192); assert reply() == 22, "trim past the end not EINVAL"
# The connection still works after all that.
req(0, 0, 4096, h=9); assert reply(9) == 0; assert rd(4096) == b"\x5c" * 4096
# A write longer than the server takes: the stream is lost, it closes.
req(1, 0, 1 << 30, h=10)
s.settimeout(10)
assert s.recv(16) == b"", "oversized write did not end the connection"
PY
# (qemu-img would not open the image file itself: the server holds its lock.)
nbdcopy "$uri" "$dir/copy3.img"
cmp "$img" "$dir/copy3.img" || fail "the server no longer serves right after the bad client"
stop_server
[ -e "$dir/unix.sock" ] && fail "the unix socket was left behind"

echo "== read-only export"
start_server ro -r -t -f raw "$img"
nbdinfo --json "$uri" | python3 -c 'import json,sys; assert json.load(sys.stdin)["exports"][0]["is_read_only"]' \
  || fail "nbdinfo does not see a read-only export"
before=$(md5sum <"$img")
if qemu-io -f raw "$uri" -c 'write -P 1 0 4k' >"$dir/ro.out" 2>&1 && ! grep -qi 'denied\|not permitted\|read-only\|failed' "$dir/ro.out"; then
  fail "a write to a read-only export succeeded"
fi
[ "$before" = "$(md5sum <"$img")" ] || fail "a read-only export changed the image"
qemu-img convert -f raw -O raw "$uri" "$dir/copy4.img"
cmp "$img" "$dir/copy4.img" || fail "read-only export reads differ"
stop_server

echo "== SIGTERM while a client writes: requests drain, exit 0"
start_server drain -t -e 2 -f raw "$img"
fio --name=drain --ioengine=nbd --uri="$uri" --rw=randwrite --bs=64k --iodepth=16 \
  --size=64M --time_based --runtime=30 --output="$dir/fio-drain.out" &
fio_pid=$!
pids+=("$fio_pid")
# A second client that connects and then says nothing: it must not hold
# up the shutdown.
python3 -c "import socket,time; s=socket.create_connection(('127.0.0.1',${uri##*:})); time.sleep(120)" &
idle_pid=$!
pids+=("$idle_pid")
sleep 1   # let the writes start; what is checked is the exit, not the timing
stop_server
kill "$idle_pid" 2>/dev/null || true
wait "$fio_pid" || true
grep -q 'clients served' "$dir/drain.log" || fail "no exit summary after SIGTERM"

echo "== without -t the server ends with its client"
start_server once -f raw "$img"
nbdinfo "$uri" >/dev/null
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "coblk-nbd without -t still runs after its client left"
wait "$pid" || fail "coblk-nbd without -t exited with status $?"

echo "== a bad URI is refused naming it"
if "$nbd" -p "$(free_port)" "$dir/no-such.img" 2>"$dir/bad.log"; then fail "started on a missing file"; fi
grep -q 'no-such.img' "$dir/bad.log" || fail "error does not name the file: $(cat "$dir/bad.log")"

echo "nbd interop: all checks passed"
