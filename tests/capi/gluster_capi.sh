#!/usr/bin/env bash
# The C API over a real GlusterFS volume, where completions arrive on
# libgfapi's threads: examples/vmm_epoll's epoll loop must still see them
# through the queue's completion fd, and coblk-nbd must serve the image to
# qemu-img. Run under tests/services/with-gluster.sh (COBLK_GLUSTER_URI).
# Usage: gluster_capi.sh PATH/TO/vmm_epoll PATH/TO/coblk-nbd
set -euo pipefail
vmm=$1 nbd=$2
: "${COBLK_GLUSTER_URI:?run under tests/services/with-gluster.sh}"
img="$COBLK_GLUSTER_URI/capi-$$.img"
qemu-img create -q -f raw "$img" 16M
"$vmm" "$img"
dir=$(mktemp -d /var/tmp/coblk-capi-gluster-XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
head -c 16M /dev/urandom >"$dir/src.img"
"$nbd" -k "$dir/nbd.sock" -t -f raw "$img" 2>"$dir/nbd.log" &
pid=$!
for _ in $(seq 100); do grep -q '^coblk-nbd: serving' "$dir/nbd.log" && break; sleep 0.1; done
uri="nbd+unix:///?socket=$dir/nbd.sock"
qemu-img convert -n -f raw -O raw "$dir/src.img" "$uri"
qemu-img compare -f raw -F raw "$dir/src.img" "$uri"
kill -TERM "$pid"
wait "$pid"
pid=
qemu-img compare -f raw -F raw "$dir/src.img" "$img"
echo "C API over gluster: epoll example and coblk-nbd passed"
