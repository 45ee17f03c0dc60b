#!/usr/bin/env python3
"""Judges the ThreadSanitizer reports in a log of the [gluster]/[rbd] run.

Usage: tsan_check.py LOG   (the test binary's stderr, run with
TSAN_OPTIONS=halt_on_error=0:exitcode=0:suppressions=tests/tsan.supp)

tests/tsan.supp silences the library-internal races it can name. Some are
left that it cannot: both racing accesses are in stripped code of
libceph-common or libgfapi (frames "<null>"), and a suppression naming the
whole library would also hide races in our completion callbacks, which run
below the library's frames. This script tells them apart by the frame that
made each access: the first frame of the access's stack that is neither
TSan's interceptor nor inline libstdc++ header code. A report where that
frame is in a shared library for every access is the library's; one where
it is in the test binary (our code) fails, as does any report whose
accesses cannot be told.

Prints each report's verdict and a last line "tsan: N reports from our
code, M inside the libraries"; exits 1 when N > 0 or a report cannot be
judged.
"""
import re
import sys

ACCESS = re.compile(r"^  (Previous )?(atomic )?(read|write)s? of size|^  (Read|Write|Atomic)", re.I)
FRAME = re.compile(r"^\s+#\d+ (.*) \((\S+?)(\+0x[0-9a-f]+)?\)$")


def reports(lines):
    cur = None
    for line in lines:
        if line.startswith("WARNING: ThreadSanitizer:"):
            cur = {"title": line.strip(), "stacks": [], "text": [line]}
            continue
        if cur is None:
            continue
        cur["text"].append(line)
        if line.startswith("SUMMARY: ThreadSanitizer"):
            yield cur
            cur = None
        elif line.startswith("  ") and not line.startswith("   "):
            cur["stacks"].append({"head": line, "frames": []})
        elif FRAME.match(line) and cur["stacks"]:
            cur["stacks"][-1]["frames"].append(FRAME.match(line).groups()[:2])


def acting_module(frames):
    """The module of the first frame that is not TSan or libstdc++ inline code."""
    for where, module in frames:
        if module.startswith("libtsan") or "/usr/include/" in where:
            continue
        return module
    return None


def main():
    ours, theirs, unclear = 0, 0, 0
    with open(sys.argv[1], errors="replace") as f:
        for rep in reports(f.read().split("\n")):
            access = [s for s in rep["stacks"] if ACCESS.match(s["head"])]
            if not access and "thread leak" not in rep["title"]:
                access = rep["stacks"][:1]
            modules = [acting_module(s["frames"]) for s in access]
            if not modules or None in modules:
                unclear += 1
                verdict = "cannot tell whose"
            elif any(not m.endswith(".so") and ".so." not in m for m in modules):
                ours += 1
                verdict = "OURS"
            else:
                theirs += 1
                verdict = "inside the libraries (" + ", ".join(sorted(set(modules))) + ")"
            print(f"tsan: {rep['title']}: {verdict}")
            if not verdict.startswith("inside"):
                sys.stdout.write("\n".join(rep["text"]) + "\n")
    print(f"tsan: {ours} reports from our code, {theirs} inside the libraries"
          + (f", {unclear} that cannot be told" if unclear else ""))
    return 1 if ours or unclear else 0


if __name__ == "__main__":
    sys.exit(main())
