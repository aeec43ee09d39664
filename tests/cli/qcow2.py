#!/usr/bin/env python3
"""qcow2.py — find and patch qcow2 metadata for the CLI tests (damage on
purpose).  Independent of kimg's code; follows docs/interop/qcow2.txt.

  qcow2.py header FILE              key=value per header field
  qcow2.py l2 FILE GUEST            "ENTRY_FILE_OFFSET ENTRY_HEX" of the L2
                                    entry mapping guest offset GUEST
  qcow2.py set-l2 FILE GUEST VALUE  overwrite that L2 entry (VALUE: int, 0x ok)
  qcow2.py host FILE GUEST          host offset of GUEST's data (also for a
                                    compressed cluster: where its data starts)
  qcow2.py rc FILE HOST             refcount of the host cluster at HOST
  qcow2.py set-rc FILE HOST VALUE   overwrite that refcount (any width)
  qcow2.py free FILE                first host offset past the file end whose
                                    refcount entry exists (for fake leaks)
"""
import struct
import sys

FIELDS = [  # name, offset, size (bytes)
    ("magic", 0, 4), ("version", 4, 4), ("backing_file_offset", 8, 8),
    ("backing_file_size", 16, 4), ("cluster_bits", 20, 4), ("size", 24, 8),
    ("crypt_method", 32, 4), ("l1_size", 36, 4), ("l1_table_offset", 40, 8),
    ("refcount_table_offset", 48, 8), ("refcount_table_clusters", 56, 4),
    ("nb_snapshots", 60, 4), ("snapshots_offset", 64, 8),
    ("incompatible_features", 72, 8), ("compatible_features", 80, 8),
    ("autoclear_features", 88, 8), ("refcount_order", 96, 4),
    ("header_length", 100, 4),
]
OFFSET_MASK = 0x00FFFFFFFFFFFE00


def be(data, off, n):
    return int.from_bytes(data[off:off + n], "big")


class Image:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = bytearray(f.read())
        self.h = {}
        for name, off, n in FIELDS:
            self.h[name] = be(self.data, off, n)
        if self.h["version"] == 2:
            self.h["refcount_order"] = 4
            self.h["header_length"] = 72
            for k in ("incompatible_features", "compatible_features", "autoclear_features"):
                self.h[k] = 0
        self.cb = self.h["cluster_bits"]
        self.cs = 1 << self.cb
        self.ext_l2 = bool(self.h["incompatible_features"] & 16)
        self.l2_entry = 16 if self.ext_l2 else 8
        self.l2_bits = self.cb - (4 if self.ext_l2 else 3)
        self.rbits = 1 << self.h["refcount_order"]

    def save(self):
        with open(self.path, "r+b") as f:
            f.write(self.data)

    def l2_pos(self, guest):
        ci = guest >> self.cb
        l1i = ci >> self.l2_bits
        l2i = ci & ((1 << self.l2_bits) - 1)
        l1e = be(self.data, self.h["l1_table_offset"] + 8 * l1i, 8)
        l2off = l1e & OFFSET_MASK
        if not l2off:
            sys.exit("guest offset %d has no L2 table" % guest)
        return l2off + l2i * self.l2_entry

    def rc_pos(self, host):
        """(byte offset of the refcount block entry, bit shift within the
        big-endian value at that byte offset, width in bytes of that value)"""
        ci = host >> self.cb
        per_block = self.cs * 8 // self.rbits
        rti = ci // per_block
        rte = be(self.data, self.h["refcount_table_offset"] + 8 * rti, 8) & ~0x1FF
        if not rte:
            sys.exit("host offset %d has no refcount block" % host)
        idx = ci % per_block
        if self.rbits >= 8:
            return rte + idx * self.rbits // 8, 0, self.rbits // 8
        bit = idx * self.rbits
        # sub-byte refcounts: entry 0 is the least significant bits of byte 0
        return rte + bit // 8, bit % 8, 1

    def get_rc(self, host):
        pos, shift, n = self.rc_pos(host)
        return (be(self.data, pos, n) >> shift) & ((1 << self.rbits) - 1)

    def set_rc(self, host, value):
        pos, shift, n = self.rc_pos(host)
        mask = ((1 << self.rbits) - 1) << shift
        old = be(self.data, pos, n)
        new = (old & ~mask) | ((value << shift) & mask)
        self.data[pos:pos + n] = new.to_bytes(n, "big")


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    cmd, img = argv[1], Image(argv[2])
    num = lambda s: int(s, 0) & 0xFFFFFFFFFFFFFFFF  # shell arithmetic is signed
    if cmd == "header":
        for k, v in img.h.items():
            print("%s=%d" % (k, v))
        print("cluster_size=%d" % img.cs)
        print("refcount_bits=%d" % img.rbits)
    elif cmd == "l2":
        pos = img.l2_pos(num(argv[3]))
        print(pos, "%016x" % be(img.data, pos, 8))
    elif cmd == "set-l2":
        pos = img.l2_pos(num(argv[3]))
        img.data[pos:pos + 8] = struct.pack(">Q", num(argv[4]))
        img.save()
    elif cmd == "host":
        e = be(img.data, img.l2_pos(num(argv[3])), 8)
        if e & (1 << 62):
            print(e & ((1 << (62 - (img.cb - 8))) - 1))
        else:
            print(e & OFFSET_MASK)
    elif cmd == "rc":
        print(img.get_rc(num(argv[3])))
    elif cmd == "set-rc":
        img.set_rc(num(argv[3]), num(argv[4]))
        img.save()
    elif cmd == "free":
        end = (len(img.data) + img.cs - 1) // img.cs * img.cs
        img.rc_pos(end)  # exits if no refcount block covers it
        print(end)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
