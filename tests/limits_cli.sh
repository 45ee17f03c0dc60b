#!/usr/bin/env bash
# ENOSPC at the command line, on a real 8 MiB tmpfs (needs root: mount):
# coblk-bench names the errno and the offset of the write that failed, and
# coblk-nbd answers a client's write that hits ENOSPC with NBD_ENOSPC, which
# qemu-io shows as "No space left on device", while later writes to space
# already allocated succeed and read back. Also coblk-nbd with its
# descriptor table full (prlimit): it waits to accept instead of failing.
# Usage: limits_cli.sh PATH/TO/coblk-bench PATH/TO/coblk-nbd
set -euo pipefail
bench=$1
nbd=$2
[[ $(id -u) == 0 ]] || { echo "FAIL: limits_cli.sh needs root to mount a small tmpfs (CI runs it as root)"; exit 1; }
for tool in qemu-io python3 prlimit; do
  command -v "$tool" >/dev/null || { echo "FAIL: missing $tool (tools/debian-packages.txt)"; exit 1; }
done
dir=$(mktemp -d /tmp/coblk-limits-cli-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do umount "$dir/fs" 2>/dev/null && break; sleep 0.1; done
  mountpoint -q "$dir/fs" && umount -l "$dir/fs"
  rm -rf "$dir"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
mkdir "$dir/fs"
mount -t tmpfs -o size=8M tmpfs "$dir/fs"

# 1. coblk-bench fills a 32 MiB sparse image on the 8 MiB file system.
truncate -s 32M "$dir/fs/bench.img"
rc=0
"$bench" --name=fill --filename="$dir/fs/bench.img" --rw=write --bs=1M --size=32M \
  --direct=1 --output-format=json >"$dir/bench.json" 2>"$dir/bench.err" || rc=$?
[[ $rc != 0 ]] || fail "coblk-bench exited 0 on a full file system"
grep -Eq '^coblk-bench: fill: write error at offset [0-9]+: No space left on device$' \
  "$dir/bench.err" || { cat "$dir/bench.err"; fail "coblk-bench did not name ENOSPC and the offset"; }
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(d["jobs"][0]["error"] != 28)' \
  "$dir/bench.json" || fail "coblk-bench's JSON does not carry error 28 (ENOSPC)"
echo "ok 1 coblk-bench: $(cat "$dir/bench.err")"
rm "$dir/fs/bench.img"

# 2. coblk-nbd: a client write larger than the free space gets ENOSPC.
truncate -s 32M "$dir/fs/nbd.img"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$nbd" -b 127.0.0.1 -p "$port" -t -e 2 -f raw "$dir/fs/nbd.img" 2>"$dir/nbd.log" &
pid=$!
pids+=("$pid")
for _ in $(seq 100); do
  grep -q '^coblk-nbd: serving' "$dir/nbd.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/nbd.log"; fail "coblk-nbd exited at start"; }
  sleep 0.1
done
grep -q '^coblk-nbd: serving' "$dir/nbd.log" || fail "coblk-nbd did not listen within 10 s"
uri="nbd://127.0.0.1:$port"
out=$(qemu-io -f raw "$uri" -c 'write -P 0x5a 0 16M' 2>&1 || true)
grep -q 'No space left on device' <<<"$out" || fail "qemu-io write of 16M: '$out'"
echo "ok 2 coblk-nbd: $out"
# Space the failed write took is allocated: overwriting it works and reads back.
out=$(qemu-io -f raw "$uri" -c 'write -P 0xa5 0 1M' -c 'read -P 0xa5 0 1M' 2>&1) ||
  fail "qemu-io after ENOSPC: $out"
grep -q 'failed' <<<"$out" && fail "qemu-io after ENOSPC: $out"
cmp -n 1048576 "$dir/fs/nbd.img" <(python3 -c 'import sys; sys.stdout.buffer.write(b"\xa5"*1048576)') ||
  fail "the image does not hold what the client wrote after ENOSPC"
echo "ok 3 coblk-nbd keeps serving after ENOSPC"

# 4. coblk-nbd with its descriptor table full: a client cannot be accepted
# (it times out), the server says why once and lives on; once descriptors
# are free again (the limit raised), the next client is served (-e 2: the
# starved client, still queued, takes a slot when it is accepted at last).
# The soft limit is the lowest free descriptor number: earlier clients left
# gaps, and poll() refuses more fds than the limit, so neither 0 nor the
# count of open fds would do.
free_fd=3
while [[ -e /proc/$pid/fd/$free_fd ]]; do free_fd=$((free_fd + 1)); done
hard=$(prlimit --pid "$pid" --nofile --raw --noheadings -o HARD | tr -d " ")
prlimit --pid "$pid" --nofile="$free_fd:$hard"
if timeout 3 qemu-io -f raw "$uri" -c 'read 0 4k' >"$dir/starved.out" 2>&1; then
  fail "a client was served with the server's descriptor table full"
fi
grep -q 'cannot accept a client: Too many open files' "$dir/nbd.log" ||
  { cat "$dir/nbd.log"; fail "coblk-nbd did not say why it could not accept"; }
kill -0 "$pid" 2>/dev/null || fail "coblk-nbd died with its descriptor table full"
prlimit --pid "$pid" --nofile="$hard:$hard"
out=$(qemu-io -f raw "$uri" -c "read -P 0xa5 0 1M" 2>&1) || { cat "$dir/nbd.log"; fail "qemu-io after fds were freed: $out"; }
grep -q 'failed' <<<"$out" && fail "qemu-io after fds were freed: $out"
echo "ok 4 coblk-nbd: out of fds a client waits, then is served"

kill -TERM "$pid"
wait "$pid" || fail "coblk-nbd exited with status $? after SIGTERM"
pids=()
