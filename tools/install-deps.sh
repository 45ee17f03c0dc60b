#!/usr/bin/env bash
# Installs the Debian packages in tools/debian-packages.txt (as root, or
# through sudo). Exits non-zero when apt-get fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
mapfile -t pkgs < <(grep -v '^\s*#' "$here/debian-packages.txt" | grep -v '^\s*$')
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q "${pkgs[@]}"
