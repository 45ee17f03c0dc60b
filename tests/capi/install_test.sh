#!/usr/bin/env bash
# A fresh user's build: `meson install` into a temporary root, then, from an
# empty temporary directory, compile a small program with nothing but the
# installed header and `pkg-config --cflags --libs coblk`, and run it.
# Usage: install_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
root=$(mktemp -d /var/tmp/coblk-install-XXXXXX)
trap 'rm -rf "$root"' EXIT
meson install -C "$build" --no-rebuild --quiet --destdir "$root/dest" >/dev/null
pc=$(find "$root/dest" -name coblk.pc | head -1)
[ -n "$pc" ] || { echo "FAIL: meson install put no coblk.pc under $root/dest"; exit 1; }
[ -n "$(find "$root/dest" -name coblk.h)" ] || { echo "FAIL: no coblk.h installed"; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$root/dest
mkdir "$root/user" && cd "$root/user"
cat >hello.c <<'C'
#include <coblk.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
    struct coblk_device *dev;
    struct coblk_queue *q;
    struct coblk_completion c;
    char out[512], in[512];
    memset(out, 'x', sizeof out);
    if (coblk_create("memory://hello?size=1M", &dev) || coblk_start(dev)) {
        fprintf(stderr, "%s\n", coblk_get_error_msg());
        return 1;
    }
    q = coblk_get_queue(dev, 0);
    if (coblk_queue_write(q, 0, out, sizeof out, NULL, 0) || coblk_queue_do_io(q, &c, 1, 1, NULL) != 1 ||
        c.ret || coblk_queue_read(q, 0, in, sizeof in, NULL, 0) ||
        coblk_queue_do_io(q, &c, 1, 1, NULL) != 1 || c.ret || memcmp(in, out, sizeof in)) {
        fprintf(stderr, "I/O failed: %s\n", coblk_get_error_msg());
        return 1;
    }
    coblk_destroy(dev);
    printf("coblk %s from the installed library\n", coblk_version());
    return 0;
}
C
flags=$(pkg-config --cflags --libs coblk)
echo "pkg-config --cflags --libs coblk: $flags"
# A sanitizer build's library needs its runtime in the program too (CI).
san=$(meson introspect "$build" --buildoptions |
      python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"))')
sanflag=
if [ "$san" != none ]; then sanflag="-fsanitize=$san"; fi
flags="$flags $sanflag"
# shellcheck disable=SC2086
cc -std=c99 -Wall -Wextra -pedantic -Werror hello.c $flags -o hello
libdir=$(pkg-config --libs-only-L coblk | sed 's/^ *-L//; s/ *$//')
LD_LIBRARY_PATH=$libdir ./hello
linked=$(LD_LIBRARY_PATH=$libdir ldd ./hello)
grep -q "$root/dest.*libcoblk" <<<"$linked" || { echo "FAIL: not linked with the installed libcoblk"; echo "$linked"; exit 1; }
# The static library links on its own with the private libraries of the .pc.
static_libs=$(pkg-config --static --libs coblk | sed 's/-lcoblk//')
# shellcheck disable=SC2086
cc -std=c99 -Wall -Wextra -pedantic -Werror hello.c $(pkg-config --cflags coblk) \
  "$libdir/libcoblk.a" $static_libs $sanflag -o hello-static
env -u LD_LIBRARY_PATH ./hello-static
