# crash-oldnew.py OLD NEW GOT [UNIT]: every UNIT-byte piece (default 4096)
# of GOT (raw) equals that piece of OLD or of NEW; prints the first bad
# offsets and exits 1 otherwise.  For the crash tests of writes in place.
import sys
old, new, got = (open(p, "rb").read() for p in sys.argv[1:4])
unit = int(sys.argv[4]) if len(sys.argv) > 4 else 4096
n = max(len(old), len(new))
old, new = old.ljust(n, b"\0"), new.ljust(n, b"\0")
got = got[:n].ljust(n, b"\0")
bad = [o for o in range(0, n, unit)
       if got[o:o + unit] != old[o:o + unit] and got[o:o + unit] != new[o:o + unit]]
if bad:
    print("pieces neither old nor new at", bad[:5])
    sys.exit(1)
