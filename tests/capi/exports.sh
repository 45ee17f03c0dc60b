#!/usr/bin/env bash
# libcoblk.so exports the C API and nothing else: every defined dynamic
# symbol starts with coblk_, and every function of include/coblk.h is there.
set -euo pipefail
lib=$1 header=$2
defined=$(nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@.*//' | sort -u)
others=$(grep -v '^coblk_' <<<"$defined" || true)
if [ -n "$others" ]; then
  echo "libcoblk.so exports symbols outside the C API:"; echo "$others" | head -20; exit 1
fi
missing=0
for fn in $(grep -o 'coblk_[a-z0-9_]*(' "$header" | tr -d '(' | sort -u); do
  grep -qx "$fn" <<<"$defined" || { echo "not exported: $fn"; missing=1; }
done
[ $missing = 0 ] || exit 1
echo "$(wc -l <<<"$defined") symbols, all coblk_*, every function of coblk.h among them"
