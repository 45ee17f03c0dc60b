#!/usr/bin/env bash
# The newcomer's first command: installs what coblk needs, builds it, and
# runs a real job: a 256 MiB raw image is created with coblk-img, filled
# from a file of random data with holes, compared back, and described.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
tools/install-deps.sh
[ -f build/build.ninja ] || meson setup build
ninja -C build -j2

work=$(mktemp -d /var/tmp/coblk-quickstart.XXXXXX)
trap 'rm -rf "$work"' EXIT
img=build/tools/coblk-img
echo "== a data file with holes: 3 MiB of random data at 0, 64M and 200M"
truncate -s 256M "$work/data.bin"
for off in 0 64 200; do
  dd if=/dev/urandom of="$work/data.bin" bs=1M count=3 seek=$off conv=notrunc status=none
done
echo "== coblk-img create -f raw disk.img 256M"
$img create -f raw "$work/disk.img" 256M
echo "== coblk-img convert -n -p data.bin disk.img (writes through coblk, skipping holes)"
$img convert -n -p -O raw "$work/data.bin" "$work/disk.img"
echo "== coblk-img compare data.bin disk.img (reads both back through coblk)"
$img compare "$work/data.bin" "$work/disk.img"
echo "== coblk-img info disk.img"
$img info "$work/disk.img"
echo "quickstart: done. Tests: tests/run"
