#!/usr/bin/env python3
"""Print a VHDX file's layout, minus what is random or names its maker
(GUIDs, sequence numbers, the creator, the region "required" bit): file
size, both headers' log fields, the region table, the metadata items'
values, and the BAT's entries (state and offset) in runs.  Two files with
the same output have the same layout.  Tests compare kimg's with
qemu-img's (tests/cli/750-vhdx-create.t)."""
import mmap
import struct
import sys

VALUED = {'3767a1ca': 'params', '2442a52f': 'size', '1dbf4181': 'logical', 'c748a3cd': 'physical'}
BAT = '6677c22d'
META = '06a27c8b'


def main(path):
    # mapped, not read: a log or a preallocated file of gigabytes is
    # mostly never looked at (reading it cost 30 s here)
    with open(path, 'rb') as fh:
        f = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    print('file size', len(f))
    print('signature', f[:8])
    for off in (64 << 10, 128 << 10):
        sig, = struct.unpack_from('<4s', f, off)
        lv, ver, ll, lo = struct.unpack_from('<HHIQ', f, off + 64)
        print('header', off, sig, 'log guid', f[off + 48:off + 64].hex(), lv, ver, ll, lo)
    regions = {}
    for off in (192 << 10, 256 << 10):
        sig, _, cnt = struct.unpack_from('<4sII', f, off)
        print('region table', off, sig, cnt)
        for i in range(cnt):
            g, fo, ln = struct.unpack_from('<16sQI', f, off + 16 + 32 * i)
            print('  region', g.hex(), fo, ln)
            regions[g.hex()[:8]] = (fo, ln)
    mo = regions[META][0]
    sig, cnt = struct.unpack_from('<8s2xH', f, mo)
    print('metadata', sig, cnt)
    for i in range(cnt):
        g, o, ln, fl = struct.unpack_from('<16sIII', f, mo + 32 + 32 * i)
        name = VALUED.get(g.hex()[:8])
        val = f[mo + o:mo + o + ln].hex() if name else '(random)'
        print('  item', g.hex(), o, ln, hex(fl), name, val)
    # the BAT in runs of entries that step by one constant (state and
    # offset in MiB of the first, the step in MiB, the count)
    bo, bl = regions[BAT]
    ents = struct.unpack_from('<%dQ' % (bl // 8), f, bo)
    i = 0
    while i < len(ents):
        j, step = i + 1, None
        while j < len(ents):
            d = ents[j] - ents[j - 1]
            if step is None:
                step = d
            elif d != step:
                break
            j += 1
        if j - i == 2 and step != 0:
            j -= 1      # a pair that only looks like a run
            step = 0
        e = ents[i]
        print('  bat %d: state %d at %d MiB, step %d MiB, %d entries'
              % (i, e & 7, e >> 20, (step or 0) >> 20, j - i))
        i = j


if __name__ == '__main__':
    main(sys.argv[1])
