#!/usr/bin/env bash
# Runs examples/vmm_epoll over a memory device, a scratch file (writeback)
# and the same file with cache=none, so the epoll loop sees completions that
# are immediate, from the kernel, and from O_DIRECT I/O.
set -euo pipefail
example=$1
dir=$(mktemp -d /var/tmp/coblk-vmm-XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$example" "memory://vmm?size=8M"
truncate -s 16M "$dir/disk.img"
"$example" "$dir/disk.img"
"$example" "file:$dir/disk.img?cache=none"
