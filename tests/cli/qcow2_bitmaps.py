#!/usr/bin/env python3
"""qcow2_bitmaps.py — read and patch qcow2 persistent dirty bitmaps for the
CLI tests 160-169 (damage on purpose, decode independently of kimg).
Follows docs/interop/qcow2.txt ("Bitmaps" extension).

  qcow2_bitmaps.py ext FILE                 "nb dir_size dir_offset ext_pos"
  qcow2_bitmaps.py dir FILE                 one line per entry: "name table_offset
                                            table_size flags type gran name_size
                                            extra entry_pos"
  qcow2_bitmaps.py table FILE NAME          the table entries, one hex per line
  qcow2_bitmaps.py bits FILE NAME [SIZE]    the dirty ranges "start length" in
                                            guest bytes (SIZE: the virtual size)
  qcow2_bitmaps.py all FILE                 every bitmap: "NAME FLAGS GRAN" then
                                            its ranges (none if in use)
  qcow2_bitmaps.py set FILE NAME FIELD VAL  patch a directory entry field
                                            (table_offset table_size flags type
                                            gran name_size extra)
  qcow2_bitmaps.py set-ext FILE FIELD VAL   patch the extension (nb reserved
                                            dir_size dir_offset)
  qcow2_bitmaps.py set-table FILE NAME I VAL  patch table entry I
"""
import struct
import sys

EXT_BITMAPS = 0x23852875
FIELDS = {"table_offset": (0, 8), "table_size": (8, 4), "flags": (12, 4),
          "type": (16, 1), "gran": (17, 1), "name_size": (18, 2), "extra": (20, 4)}
EXT_FIELDS = {"nb": (0, 4), "reserved": (4, 4), "dir_size": (8, 8), "dir_offset": (16, 8)}


def be(d, o, n):
    return int.from_bytes(d[o:o + n], "big")


class Image:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.d = bytearray(f.read())
        d = self.d
        self.cs = 1 << be(d, 20, 4)
        self.size = be(d, 24, 8)
        hlen = be(d, 100, 4) if be(d, 4, 4) >= 3 else 72
        self.ext_pos = None
        off = hlen
        while off + 8 <= self.cs:
            t, n = be(d, off, 4), be(d, off + 4, 4)
            if t == 0:
                break
            if t == EXT_BITMAPS:
                self.ext_pos = off + 8
            off += 8 + ((n + 7) & ~7)
        if self.ext_pos is None:
            raise SystemExit("no bitmaps extension")
        p = self.ext_pos
        self.nb, self.dir_size, self.dir_off = be(d, p, 4), be(d, p + 8, 8), be(d, p + 16, 8)

    def entries(self):
        d, pos, end = self.d, self.dir_off, self.dir_off + self.dir_size
        out = []
        for _ in range(self.nb):
            if pos + 24 > end:
                break
            e = {k: be(d, pos + o, n) for k, (o, n) in FIELDS.items()}
            nm = pos + 24 + e["extra"]
            e["name"] = bytes(d[nm:nm + e["name_size"]]).decode("utf-8", "replace")
            e["pos"] = pos
            out.append(e)
            pos += (24 + e["extra"] + e["name_size"] + 7) & ~7
        return out

    def entry(self, name):
        for e in self.entries():
            if e["name"] == name:
                return e
        raise SystemExit("no bitmap " + name)

    def table(self, e):
        o = e["table_offset"]
        return [be(self.d, o + 8 * i, 8) for i in range(e["table_size"])]

    def put(self, pos, n, val):
        self.d[pos:pos + n] = int(val, 0).to_bytes(n, "big") if isinstance(val, str) \
            else val.to_bytes(n, "big")

    def save(self):
        with open(self.path, "r+b") as f:
            f.write(self.d)


def bits(img, e, size):
    gran = 1 << e["gran"]
    nbits = (size + gran - 1) // gran
    per = img.cs * 8
    ranges = []
    for i, t in enumerate(img.table(e)):
        first = i * per
        if first >= nbits:
            break
        cnt = min(per, nbits - first)
        off = t & 0x00FFFFFFFFFFFE00
        for b in range(cnt):
            if off:
                byte = img.d[off + b // 8] if off + b // 8 < len(img.d) else 0
                v = (byte >> (b % 8)) & 1
            else:
                v = t & 1
            if v:
                s = (first + b) * gran
                ln = min(gran, size - s)
                if ranges and ranges[-1][0] + ranges[-1][1] == s:
                    ranges[-1][1] += ln
                else:
                    ranges.append([s, ln])
    return ranges


def main(a):
    img = Image(a[1])
    cmd = a[0]
    if cmd == "ext":
        print(img.nb, img.dir_size, img.dir_off, img.ext_pos)
    elif cmd == "dir":
        for e in img.entries():
            print(e["name"], e["table_offset"], e["table_size"], e["flags"], e["type"],
                  e["gran"], e["name_size"], e["extra"], e["pos"])
    elif cmd == "table":
        for t in img.table(img.entry(a[2])):
            print("%#x" % t)
    elif cmd == "bits":
        size = int(a[3], 0) if len(a) > 3 else img.size
        for s, n in bits(img, img.entry(a[2]), size):
            print(s, n)
    elif cmd == "all":
        for e in img.entries():
            print(e["name"], e["flags"], e["gran"])
            if not e["flags"] & 1:
                for s, n in bits(img, e, img.size):
                    print(" ", s, n)
    elif cmd == "set":
        e = img.entry(a[2])
        o, n = FIELDS[a[3]]
        img.put(e["pos"] + o, n, a[4])
        img.save()
    elif cmd == "set-ext":
        o, n = EXT_FIELDS[a[2]]
        img.put(img.ext_pos + o, n, a[3])
        img.save()
    elif cmd == "set-table":
        e = img.entry(a[2])
        img.put(e["table_offset"] + 8 * int(a[3]), 8, a[4])
        img.save()
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
