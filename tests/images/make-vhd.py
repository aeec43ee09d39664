#!/usr/bin/env python3
"""make-vhd.py — VHD images qemu-img cannot make, written from Microsoft's
"Virtual Hard Disk Image Format Specification" (footer "conectix", dynamic
header "cxsparse", BAT of big-endian sector numbers, a sector bitmap before
each block, checksums = one's complement of the byte sum):

  make-vhd.py OUT --type fixed|dynamic|diff --size BYTES [options]

  --creator APP     creator application, 4 bytes ("win " Azure/Hyper-V,
                    "vbox", "d2v ", "vpc ", "qemu"); default "win "
  --chs             store the CHS geometry of the size (the spec's
                    algorithm) and make the size the geometry's product
  --block-size N    dynamic/diff block size (default 2 MiB)
  --data OFF:LEN    write the pattern at guest [OFF, OFF+LEN) (repeatable;
                    dynamic images allocate the blocks it touches, in order)
  --reverse         allocate blocks in reverse guest order
  --raw FILE        also write the guest content as a raw file
  --set FIELD=VAL   patch a field after building (checksums recomputed
                    unless the patch is a checksum): footer.<name> (both
                    footer copies), header.<name>, bat.<index>; names below
  --truncate N      cut the file to N bytes at the end (negative: remove N)

The pattern byte at guest offset b is ((b >> 9) * 37 + (b & 511)) % 251 + 1
(never zero), so a reader off by a sector or a block shows up.
"""
import argparse, struct, sys

FOOTER = {  # name: (offset, struct format)
    'features': (8, '>I'), 'version': (12, '>I'), 'data_offset': (16, '>Q'),
    'timestamp': (24, '>I'), 'creator_app': (28, '4s'), 'creator_version': (32, '>I'),
    'creator_os': (36, '4s'), 'orig_size': (40, '>Q'), 'current_size': (48, '>Q'),
    'cyls': (56, '>H'), 'heads': (58, 'B'), 'spt': (59, 'B'), 'disk_type': (60, '>I'),
    'checksum': (64, '>I'),
}
HEADER = {
    'data_offset': (8, '>Q'), 'table_offset': (16, '>Q'), 'version': (24, '>I'),
    'max_table_entries': (28, '>I'), 'block_size': (32, '>I'), 'checksum': (36, '>I'),
}


def checksum(buf, off):
    b = bytearray(buf)
    b[off:off + 4] = bytes(4)
    return ~sum(b) & 0xffffffff


def chs(size):
    """The specification's geometry for SIZE bytes (cylinders, heads, spt)."""
    total = min(size // 512, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


def pattern(off, n):
    return bytes(((b >> 9) * 37 + (b & 511)) % 251 + 1 for b in range(off, off + n))


def put(buf, table, name, val):
    off, fmt = table[name]
    if fmt.endswith('s'):
        val = val.encode('latin-1') if isinstance(val, str) else val
    struct.pack_into(fmt, buf, off, val)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out')
    ap.add_argument('--type', choices=('fixed', 'dynamic', 'diff'), required=True)
    ap.add_argument('--size', type=int, required=True)
    ap.add_argument('--creator', default='win ')
    ap.add_argument('--chs', action='store_true')
    ap.add_argument('--block-size', type=int, default=2 << 20)
    ap.add_argument('--data', action='append', default=[])
    ap.add_argument('--reverse', action='store_true')
    ap.add_argument('--raw')
    ap.add_argument('--set', action='append', default=[])
    ap.add_argument('--truncate', type=int)
    a = ap.parse_args()

    size = a.size
    cyls, heads, spt = chs(size)
    if a.chs:
        size = cyls * heads * spt * 512
    guest = bytearray(size)
    for d in a.data:
        o, n = (int(x, 0) for x in d.split(':'))
        guest[o:o + n] = pattern(o, n)

    footer = bytearray(512)
    footer[0:8] = b'conectix'
    put(footer, FOOTER, 'features', 2)
    put(footer, FOOTER, 'version', 0x00010000)
    put(footer, FOOTER, 'data_offset', 0xffffffffffffffff if a.type == 'fixed' else 512)
    put(footer, FOOTER, 'timestamp', 0x2a000000)
    put(footer, FOOTER, 'creator_app', a.creator)
    put(footer, FOOTER, 'creator_version', 0x000a0000)
    put(footer, FOOTER, 'creator_os', 'Wi2k')
    put(footer, FOOTER, 'orig_size', size)
    put(footer, FOOTER, 'current_size', size)
    put(footer, FOOTER, 'cyls', cyls)
    put(footer, FOOTER, 'heads', heads)
    put(footer, FOOTER, 'spt', spt)
    put(footer, FOOTER, 'disk_type', {'fixed': 2, 'dynamic': 3, 'diff': 4}[a.type])
    footer[68:84] = bytes(range(0x10, 0x20))            # unique id

    header = bytearray(1024)
    bs = a.block_size
    if a.type == 'fixed':
        body = bytearray(guest)
        bat = []
    else:
        header[0:8] = b'cxsparse'
        entries = (size + bs - 1) // bs
        bat_off = 1536
        bat_bytes = (entries * 4 + 511) // 512 * 512
        put(header, HEADER, 'data_offset', 0xffffffffffffffff)
        put(header, HEADER, 'table_offset', bat_off)
        put(header, HEADER, 'version', 0x00010000)
        put(header, HEADER, 'max_table_entries', entries)
        put(header, HEADER, 'block_size', bs)
        if a.type == 'diff':
            struct.pack_into('>I', header, 56, 0x2a000000)              # parent time
            header[40:56] = bytes(range(0x20, 0x30))                    # parent id
            name = 'parent.vhd'.encode('utf-16-be')
            header[64:64 + len(name)] = name
        bat = [0xffffffff] * entries
        used = sorted({i for i in range(entries) if any(guest[i * bs:(i + 1) * bs])})
        if a.reverse:
            used.reverse()
        bitmap = ((bs // 512 + 7) // 8 + 511) // 512 * 512
        body = bytearray(bat_off + bat_bytes)
        for i in used:
            bat[i] = len(body) // 512
            blk = bytes(guest[i * bs:(i + 1) * bs])
            body += b'\xff' * bitmap + blk + bytes(bs - len(blk))
    for f in a.set:                     # patches, before the checksums
        name, val = f.split('=', 1)
        part, field = name.split('.', 1)
        v = val if val.startswith('"') else int(val, 0)
        v = v.strip('"') if isinstance(v, str) else v
        if part == 'footer':
            put(footer, FOOTER, field, v)
        elif part == 'header':
            put(header, HEADER, field, v)
        else:
            bat[int(field)] = v
    sums = {n.split('=')[0] for n in a.set}
    if 'footer.checksum' not in sums:
        put(footer, FOOTER, 'checksum', checksum(footer, 64))
    if a.type != 'fixed':
        if 'header.checksum' not in sums:
            put(header, HEADER, 'checksum', checksum(header, 36))
        body[0:512] = footer
        body[512:1536] = header
        body[1536:1536 + bat_bytes] = b'\xff' * bat_bytes
        for i, e in enumerate(bat):
            struct.pack_into('>I', body, 1536 + 4 * i, e)
    img = bytes(body) + bytes(footer)
    if a.truncate is not None:
        img = img[:a.truncate] if a.truncate >= 0 else img[:a.truncate]
    open(a.out, 'wb').write(img)
    if a.raw:
        open(a.raw, 'wb').write(guest)


if __name__ == '__main__':
    main()
