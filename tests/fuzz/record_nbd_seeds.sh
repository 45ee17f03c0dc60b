#!/usr/bin/env bash
# Records what real NBD clients (qemu-io, nbdinfo) send to coblk-nbd, as
# seeds of the nbd_proto fuzz target: coblk-nbd serves a 1 MiB scratch file,
# a small relay between each client and the server keeps the client's
# bytes, and each seed is the target's two-byte export prefix (writable,
# name "", 1 MiB) followed by those bytes.
# Usage: tests/fuzz/record_nbd_seeds.sh PATH/TO/coblk-nbd OUT_DIR
set -euo pipefail
nbd=$1
out=$2
for tool in qemu-io nbdinfo python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
mkdir -p "$out"
dir=$(mktemp -d /var/tmp/coblk-nbd-seeds.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

truncate -s 1M "$dir/disk.img"
sport=$(free_port)
"$nbd" -b 127.0.0.1 -p "$sport" -t -f raw "$dir/disk.img" 2>"$dir/server.log" &
pids+=($!)
for _ in $(seq 100); do
    grep -q '^coblk-nbd: serving' "$dir/server.log" && break
    sleep 0.1
done
grep -q '^coblk-nbd: serving' "$dir/server.log" || { cat "$dir/server.log" >&2; exit 1; }

# record NAME CMD...: runs CMD (with {} in it replaced by the relay's
# nbd:// URI) through a relay that serves that one client and keeps its
# bytes; writes the seed OUT_DIR/NAME.
record() {
    local name=$1; shift
    python3 - "$sport" "$dir/$name" <<'PY' &
import selectors, socket, sys
sport, base = int(sys.argv[1]), sys.argv[2]
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
ls.settimeout(30)
with open(base + ".port.tmp", "w") as f:
    f.write(str(ls.getsockname()[1]))
import os
os.rename(base + ".port.tmp", base + ".port")
c, _ = ls.accept()
s = socket.create_connection(("127.0.0.1", sport), timeout=30)
sel = selectors.DefaultSelector()
sel.register(c, selectors.EVENT_READ, s)
sel.register(s, selectors.EVENT_READ, c)
with open(base + ".raw", "wb") as rec:
    done = False
    while not done:
        events = sel.select(timeout=30)
        if not events:
            break
        for key, _ in events:
            data = key.fileobj.recv(1 << 20)
            if not data:
                done = True
                break
            if key.fileobj is c:
                rec.write(data)
            key.data.sendall(data)
PY
    local relay=$!
    pids+=("$relay")
    for _ in $(seq 100); do
        [[ -f $dir/$name.port ]] && break
        sleep 0.1
    done
    local uri="nbd://127.0.0.1:$(cat "$dir/$name.port")"
    local args=("${@//\{\}/$uri}")
    timeout 60 "${args[@]}" >/dev/null
    wait "$relay"
    { printf '\x00\x05'; cat "$dir/$name.raw"; } >"$out/$name"
}

record qemu-io-read-write qemu-io -f raw {} -c 'read 0 4k' -c 'write -P 0x5a 4k 8k' \
    -c 'write -z 64k 64k' -c 'discard 128k 64k' -c 'flush' -c 'read -P 0x5a 4k 8k'
record nbdinfo nbdinfo {}
record nbdinfo-list nbdinfo --list {}
