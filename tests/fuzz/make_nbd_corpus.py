#!/usr/bin/env python3
"""Writes the hand-made seeds of the nbd_proto fuzz target.

Each seed is what nbd_proto_fuzz.cpp reads: two bytes choosing the export
(byte 0: bit 0 read-only, bits 1-2 the name index; byte 1: the size index
into kSizes), then a client's byte stream: client flags, options,
requests. Usage: make_nbd_corpus.py DIR (files are named after the case).
"""
import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054
REQUEST = 0x25609513
NAMES = {"": 0, "disk": 1}
SIZE_1M = 5        # index of 1 MiB in kSizes
SIZE_64K7 = 4      # 65536 + 7
SIZE_HUGE = 10     # UINT64_MAX


def export(read_only=False, name="", size=SIZE_1M):
    return bytes([NAMES[name] << 1 | int(read_only), size])


def cflags(no_zeroes=True):
    return struct.pack(">I", 1 | (2 if no_zeroes else 0))


def opt(option, data=b""):
    return struct.pack(">QII", IHAVEOPT, option, len(data)) + data


def info_data(name, *types):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(types)) + b"".join(
        struct.pack(">H", t) for t in types)


def req(cmd, off=0, length=0, flags=0, handle=1, payload=b""):
    return struct.pack(">IHHQQI", REQUEST, flags, cmd, handle, off, length) + payload


READ, WRITE, DISC, FLUSH, TRIM, WZ = 0, 1, 2, 3, 4, 6
GO = opt(7, info_data(""))


def cases():
    yield "export-name", export() + cflags(False) + opt(1) + req(READ, 0, 512) + req(DISC)
    yield "go-read-write", (export() + cflags() + GO + req(WRITE, 4096, 8, payload=b"abcdefgh")
                            + req(READ, 4096, 8, handle=2) + req(FLUSH, handle=3) + req(DISC))
    yield "info-then-go", (export(name="disk") + cflags() + opt(6, info_data("disk", 3, 0))
                           + opt(7, info_data("disk", 3)) + req(READ, 0, 4096) + req(DISC))
    yield "list-abort", export() + cflags() + opt(3) + opt(3, b"x") + opt(2)
    yield "unknown-options", (export() + cflags() + opt(5) + opt(8) + opt(9, b"\0" * 8)
                              + opt(6, b"\0\0") + opt(7, info_data("nope")) + GO + req(DISC))
    yield "trim-zeroes-fua", (export() + cflags() + GO + req(TRIM, 0, 65536, flags=1)
                              + req(WZ, 65536, 65536, flags=3) + req(WRITE, 0, 4, 1, payload=b"1234")
                              + req(FLUSH, flags=1) + req(DISC))
    yield "past-the-end", (export(size=SIZE_64K7) + cflags() + GO + req(READ, 65536, 8)
                           + req(WRITE, 65540, 8, payload=b"\xff" * 8) + req(TRIM, 2**64 - 1, 2)
                           + req(WZ, 0, 65536 + 8) + req(READ, 0, 65536 + 7) + req(DISC))
    yield "read-only", (export(read_only=True) + cflags() + GO + req(WRITE, 0, 4, payload=b"nope")
                        + req(TRIM, 0, 512) + req(READ, 0, 512, flags=1) + req(DISC))
    yield "bad-flags-commands", (export() + cflags() + GO + req(READ, 0, 512, flags=0x80)
                                 + req(42) + req(5, 0, 512) + req(READ, 0, 512, flags=2)
                                 + req(WRITE, 0, 2, flags=2, payload=b"zz") + req(DISC))
    yield "huge-export", (export(size=SIZE_HUGE) + cflags() + GO + req(READ, 2**63, 2**25)
                          + req(READ, 0, 2**25 + 1) + req(TRIM, 2**64 - 2, 1) + req(DISC))
    yield "write-too-long", export() + cflags() + GO + req(WRITE, 0, 2**25 + 1)
    yield "bad-magic", export() + cflags() + GO + b"\x25\x60\x95\x14" + b"\0" * 24


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, data in cases():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
