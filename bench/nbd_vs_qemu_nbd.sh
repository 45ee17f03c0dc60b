#!/usr/bin/env bash
# coblk-nbd next to qemu-nbd: both serve the same raw file, held in the page
# cache, to the same fio job (ioengine=nbd, one connection, 4 KiB, depth
# 32). Each round runs every job against one server then the other, the
# order alternating between rounds; prints every round, then the medians
# and the coblk/qemu IOPS ratio.
# usage: bench/nbd_vs_qemu_nbd.sh [BUILD_DIR [ROUNDS [SECONDS]]]
set -euo pipefail
build=${1:-build}
rounds=${2:-5}
secs=${3:-10}
nbd="$build/tools/nbd/coblk-nbd"
[ -x "$nbd" ] || { echo "nbd_vs_qemu_nbd: $nbd not built (ninja -C $build)" >&2; exit 2; }
for t in qemu-nbd fio python3; do
  command -v $t >/dev/null || { echo "nbd_vs_qemu_nbd: $t not installed" >&2; exit 2; }
done
dir=$(mktemp -d /var/tmp/coblk-nbdbench-XXXXXX)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

img=$dir/disk.img
head -c $((1024 * 1024 * 1024)) /dev/urandom >"$img"
cat "$img" >/dev/null   # into the page cache

# start NAME: serves $img with coblk-nbd or qemu-nbd on a new port; sets $port.
start() {
  port=$(free_port)
  if [ "$1" = coblk ]; then
    "$nbd" -b 127.0.0.1 -p "$port" -t -f raw --cache=writeback "$img" 2>"$dir/server.log" &
  else
    qemu-nbd -b 127.0.0.1 -p "$port" -t -f raw --cache=writeback "$img" 2>"$dir/server.log" &
  fi
  server=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1).close()" \
      2>/dev/null && return 0
    sleep 0.1
  done
  echo "nbd_vs_qemu_nbd: $1 server did not start" >&2; cat "$dir/server.log" >&2; exit 1
}
stop() { kill -TERM "$server"; wait "$server" || true; server=; }

# run RW: one fio job against the running server; prints its IOPS.
run() {
  fio --name=nbd --ioengine=nbd --uri="nbd://127.0.0.1:$port" --rw="$1" --bs=4k \
    --iodepth=32 --size=1G --time_based --runtime="$secs" --ramp_time=1 \
    --output-format=json --output="$dir/fio.json" >/dev/null
  python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0];
print(round(j["read"]["iops"] + j["write"]["iops"]))' "$dir/fio.json"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "qemu-nbd: $(qemu-nbd --version | head -1)"
for rw in randread randwrite; do
  coblk=() qemu=()
  for ((i = 1; i <= rounds; i++)); do
    order=(coblk qemu)
    [ $((i % 2)) = 0 ] && order=(qemu coblk)
    for s in "${order[@]}"; do
      start "$s"
      v=$(run "$rw")
      stop
      if [ "$s" = coblk ]; then c=$v; coblk+=("$v"); else q=$v; qemu+=("$v"); fi
    done
    echo "$rw round $i (${order[0]} first): coblk-nbd $c IOPS, qemu-nbd $q IOPS"
  done
  mc=$(printf '%s\n' "${coblk[@]}" | median)
  mq=$(printf '%s\n' "${qemu[@]}" | median)
  awk -v rw="$rw" -v c="$mc" -v q="$mq" 'BEGIN {
    printf "%s median: coblk-nbd %.0f IOPS, qemu-nbd %.0f IOPS, ratio %.2f\n", rw, c, q, c / q }'
done
