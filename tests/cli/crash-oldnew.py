# crash-oldnew.py OLD NEW GOT [UNIT]: every UNIT-byte piece (default 4096)
# of GOT (raw) equals that piece of OLD or of NEW (a file shorter than
# the longer of OLD and NEW reads as zeros past its end); prints the first
# bad offsets and exits 1 otherwise.  For the crash tests of writes in
# place.  The files are mapped, not read: reading three images into
# Python's heap cost a page fault per 4 KiB (about 75 ms for 18 MiB on a
# 2-vCPU guest), called once per crash point.
import mmap, sys


def mapped(path):
    with open(path, "rb") as f:
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:      # an empty file cannot be mapped
            return b""


old, new, got = (mapped(p) for p in sys.argv[1:4])
unit = int(sys.argv[4]) if len(sys.argv) > 4 else 4096
n = max(len(old), len(new))


def piece(m, o):
    p = m[o:o + unit]
    want = min(unit, n - o)
    return p if len(p) == want else p.ljust(want, b"\0")


bad = []
for o in range(0, n, unit):
    g = piece(got, o)
    if g != piece(old, o) and g != piece(new, o):
        bad.append(o)
        if len(bad) == 5:
            break
if bad:
    print("pieces neither old nor new at", bad[:5])
    sys.exit(1)
