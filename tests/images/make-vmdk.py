#!/usr/bin/env python3
"""make-vmdk.py — VMDK sparse extents qemu-img cannot make, written from
VMware's "Virtual Disk Format 5.0" note (all fields little-endian, offsets
and sizes in 512-byte sectors):

  make-vmdk.py OUT --type sparse|stream|cowd --size BYTES [options]

  sparse   a hosted sparse extent ("KDMV") with its descriptor embedded:
           header, descriptor, redundant GD and GTs, GD and GTs, grains
           (qemu's monolithicSparse layout); --version 1, 2 or 3
  stream   streamOptimized as VMware writes it: the header says
           gdOffset = GD_AT_END; deflated grains behind grain markers, each
           grain table after its grains behind a GT marker, then the GD
           behind a GD marker, a footer marker, the footer (the header with
           the real gdOffset) and an end-of-stream marker
  cowd     a vmfsSparse ("COWD") extent: 2048-byte header, GD, GTs of 4096
           entries, grains; --descriptor FILE also writes a descriptor
           (createType "vmfsSparse") naming OUT by its base name

  --data OFF:LEN    write the pattern at guest [OFF, OFF+LEN) (repeatable)
  --zero OFF:LEN    zeroed-grain entries (GTE 1) for the grains inside it
                    (sparse with --version 2 or 3; sets flags bit 2)
  --grain SECTORS   grain size (default 128 = 64 KiB)
  --gtes N          entries per grain table (default 512; cowd: 4096)
  --raw FILE        also write the guest content as a raw file
  --set FIELD=VAL   patch a header field after building: header.<name>
                    (the header at offset 0) or footer.<name> (stream)
  --gd I=VAL        set grain directory entry I (sectors; @J: entry J's value)
  --gt T:I=VAL      set entry I of grain table T (sectors)
  --marker G:lba=V|size=V   patch grain G's marker (stream)
  --bad-grain G     replace grain G's deflate data by a stream that
                    inflates to half a grain (stream)
  --poke OFF=HEX    write bytes at a file offset
  --break-marker gt|gd  damage the first GT marker or the GD marker (stream)
  --truncate N      cut N bytes from the end of the file

The pattern byte at guest offset b is ((b >> 9) * 37 + (b & 511)) % 251 + 1
(never zero), as make-vhd.py's.
"""
import argparse, os, struct, sys, zlib

SECTOR = 512
GD_AT_END = 0xffffffffffffffff
HEADER = {  # name: (offset, struct format) in the 512-byte KDMV header
    'magic': (0, '4s'), 'version': (4, '<I'), 'flags': (8, '<I'),
    'capacity': (12, '<Q'), 'grain': (20, '<Q'), 'desc_offset': (28, '<Q'),
    'desc_size': (36, '<Q'), 'gtes': (44, '<I'), 'rgd_offset': (48, '<Q'),
    'gd_offset': (56, '<Q'), 'overhead': (64, '<Q'), 'unclean': (72, 'B'),
    'nl_chars': (73, '4s'), 'compress': (77, '<H'),
}
COWD = {
    'magic': (0, '4s'), 'version': (4, '<I'), 'flags': (8, '<I'),
    'capacity': (12, '<I'), 'grain': (16, '<I'), 'gd_offset': (20, '<I'),
    'gd_entries': (24, '<I'), 'free_sector': (28, '<I'),
}


def pattern(off, n):
    return bytes(((b >> 9) * 37 + (b & 511)) % 251 + 1 for b in range(off, off + n))


def sectors(n):
    return (n + SECTOR - 1) // SECTOR


def pad(b):
    return b + bytes(-len(b) % SECTOR)


def kdmv_header(a, cap_sectors, flags, gd, rgd, overhead, compress, desc_off, desc_size):
    h = bytearray(SECTOR)
    for name, val in (('magic', b'KDMV'), ('version', a.version), ('flags', flags),
                      ('capacity', cap_sectors), ('grain', a.grain),
                      ('desc_offset', desc_off), ('desc_size', desc_size),
                      ('gtes', a.gtes), ('rgd_offset', rgd), ('gd_offset', gd),
                      ('overhead', overhead), ('nl_chars', b'\n \r\n'),
                      ('compress', compress)):
        off, fmt = HEADER[name]
        struct.pack_into(fmt, h, off, val)
    return h


def descriptor(a, create_type, cap_sectors, extent_line):
    return ('# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
            'createType="%s"\n\n# Extent description\n%s\n\n'
            '# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = "4"\n'
            'ddb.geometry.cylinders = "%d"\nddb.geometry.heads = "16"\n'
            'ddb.geometry.sectors = "63"\nddb.adapterType = "ide"\n'
            % (create_type, extent_line, max(cap_sectors // (16 * 63), 1))).encode()


def metadata_marker(nsect, mtype):
    return struct.pack('<QII', nsect, 0, mtype) + bytes(SECTOR - 16)


def put(buf, table, base, name, val):
    off, fmt = table[name]
    if fmt.endswith('s'):
        val = val.encode() if isinstance(val, str) else val
    else:
        val = int(val, 0)
    struct.pack_into(fmt, buf, base + off, val)


def build_sparse(a, guest, alloc, zeros):
    cap = a.size // SECTOR
    grain_b = a.grain * SECTOR
    cover = a.gtes * a.grain
    gd_n = (cap + cover - 1) // cover
    gt_sect = sectors(a.gtes * 4)
    desc_off, desc_sect = 1, 20
    rgd = desc_off + desc_sect
    gd = rgd + sectors(gd_n * 4) + gd_n * gt_sect
    meta_end = gd + sectors(gd_n * 4) + gd_n * gt_sect
    overhead = (meta_end + a.grain - 1) // a.grain * a.grain
    flags = 0x3 | (0x4 if a.version >= 2 and (zeros or a.version == 2) else 0)
    gts = [[0] * a.gtes for _ in range(gd_n)]
    out = bytearray(overhead * SECTOR)
    for g in sorted(alloc):
        gts[g // a.gtes][g % a.gtes] = len(out) // SECTOR
        out += guest[g * grain_b:(g + 1) * grain_b].ljust(grain_b, b'\0')
    for g in zeros:
        gts[g // a.gtes][g % a.gtes] = 1
    for base in (rgd, gd):
        gde = [base + sectors(gd_n * 4) + i * gt_sect for i in range(gd_n)]
        struct.pack_into('<%dI' % gd_n, out, base * SECTOR, *gde)
        for i, t in enumerate(gts):
            struct.pack_into('<%dI' % a.gtes, out, gde[i] * SECTOR, *t)
    out[0:SECTOR] = kdmv_header(a, cap, flags, gd, rgd, overhead, 0, desc_off, desc_sect)
    d = descriptor(a, 'monolithicSparse', cap, 'RW %d SPARSE "%s"' % (cap, os.path.basename(a.out)))
    out[desc_off * SECTOR:desc_off * SECTOR + len(d)] = d
    return out, {'gd': gd}


def build_stream(a, guest, alloc):
    cap = a.size // SECTOR
    grain_b = a.grain * SECTOR
    cover = a.gtes * a.grain
    gd_n = (cap + cover - 1) // cover
    desc_off, desc_sect, overhead = 1, 20, 128
    out = bytearray(overhead * SECTOR)
    gde = [0] * gd_n
    markers = {}
    gt_markers = []
    for t in range(gd_n):
        gt = [0] * a.gtes
        for g in sorted(x for x in alloc if x // a.gtes == t):
            data = guest[g * grain_b:min((g + 1) * grain_b, a.size)]
            z = zlib.compress(data)
            if g in a.bad_grain:
                z = zlib.compress(data[:len(data) // 2])
            gt[g % a.gtes] = len(out) // SECTOR
            markers[g] = len(out)
            out += pad(struct.pack('<QI', g * a.grain, len(z)) + z)
        if any(gt):
            gt_markers.append(len(out))
            out += metadata_marker(sectors(a.gtes * 4), 1)
            gde[t] = len(out) // SECTOR
            out += pad(struct.pack('<%dI' % a.gtes, *gt))
    gd_marker = len(out)
    out += metadata_marker(sectors(gd_n * 4), 2)
    gd = len(out) // SECTOR
    out += pad(struct.pack('<%dI' % gd_n, *gde))
    flags = 0x30001
    hdr = kdmv_header(a, cap, flags, GD_AT_END, 0, overhead, 1, desc_off, desc_sect)
    out[0:SECTOR] = hdr
    d = descriptor(a, 'streamOptimized', cap, 'RW %d SPARSE "%s"' % (cap, os.path.basename(a.out)))
    out[desc_off * SECTOR:desc_off * SECTOR + len(d)] = d
    out += metadata_marker(1, 3)
    footer_at = len(out)
    out += kdmv_header(a, cap, flags, gd, 0, overhead, 1, desc_off, desc_sect)
    out += bytes(SECTOR)            # end-of-stream marker: all zeros
    return out, {'gd': gd, 'footer': footer_at, 'markers': markers,
                 'gt_markers': gt_markers, 'gd_marker': gd_marker}


def build_cowd(a, guest, alloc):
    cap = a.size // SECTOR
    grain_b = a.grain * SECTOR
    cover = a.gtes * a.grain
    gd_n = (cap + cover - 1) // cover
    gd = 4
    gt_sect = sectors(a.gtes * 4)
    first_gt = gd + sectors(gd_n * 4)
    out = bytearray((first_gt + gd_n * gt_sect) * SECTOR)
    gts = [[0] * a.gtes for _ in range(gd_n)]
    for g in sorted(alloc):
        gts[g // a.gtes][g % a.gtes] = len(out) // SECTOR
        out += guest[g * grain_b:(g + 1) * grain_b].ljust(grain_b, b'\0')
    struct.pack_into('<%dI' % gd_n, out, gd * SECTOR,
                     *[first_gt + i * gt_sect for i in range(gd_n)])
    for i, t in enumerate(gts):
        struct.pack_into('<%dI' % a.gtes, out, (first_gt + i * gt_sect) * SECTOR, *t)
    for name, val in (('magic', b'COWD'), ('version', 1), ('flags', 3), ('capacity', cap),
                      ('grain', a.grain), ('gd_offset', gd), ('gd_entries', gd_n),
                      ('free_sector', len(out) // SECTOR)):
        off, fmt = COWD[name]
        struct.pack_into(fmt, out, off, val)
    if a.descriptor:
        with open(a.descriptor, 'wb') as f:
            f.write(descriptor(a, 'vmfsSparse', cap,
                               'RW %d VMFSSPARSE "%s"' % (cap, os.path.basename(a.out))))
    return out, {'gd': gd}


def ranges(specs):
    for s in specs:
        o, n = s.split(':')
        yield int(o, 0), int(n, 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out')
    ap.add_argument('--type', required=True, choices=('sparse', 'stream', 'cowd'))
    ap.add_argument('--size', required=True, type=lambda s: int(s, 0))
    ap.add_argument('--version', type=int)
    ap.add_argument('--grain', type=int, default=128)
    ap.add_argument('--gtes', type=int)
    ap.add_argument('--data', action='append', default=[])
    ap.add_argument('--zero', action='append', default=[])
    ap.add_argument('--raw')
    ap.add_argument('--descriptor')
    ap.add_argument('--set', action='append', default=[])
    ap.add_argument('--gd', action='append', default=[])
    ap.add_argument('--gt', action='append', default=[])
    ap.add_argument('--marker', action='append', default=[])
    ap.add_argument('--bad-grain', action='append', default=[], type=int)
    ap.add_argument('--poke', action='append', default=[])
    ap.add_argument('--break-marker', choices=('gt', 'gd'))
    ap.add_argument('--truncate', type=int, default=0)
    a = ap.parse_args()
    if a.version is None:
        a.version = 3 if a.type == 'stream' else 1
    if a.gtes is None:
        a.gtes = 4096 if a.type == 'cowd' else 512
    if a.size % SECTOR:
        sys.exit('--size must be a multiple of 512')
    grain_b = a.grain * SECTOR
    guest = bytearray(a.size)
    alloc, zeros = set(), set()
    for o, n in ranges(a.data):
        if o + n > a.size:
            sys.exit('--data %d:%d runs past --size' % (o, n))
        guest[o:o + n] = pattern(o, n)
        alloc.update(range(o // grain_b, (o + n + grain_b - 1) // grain_b))
    for o, n in ranges(a.zero):
        for g in range(o // grain_b, (o + n + grain_b - 1) // grain_b):
            zeros.add(g)
            alloc.discard(g)
            guest[g * grain_b:(g + 1) * grain_b] = bytes(len(guest[g * grain_b:(g + 1) * grain_b]))
    if a.type == 'sparse':
        out, where = build_sparse(a, guest, alloc, zeros)
    elif a.type == 'stream':
        out, where = build_stream(a, guest, alloc)
    else:
        out, where = build_cowd(a, guest, alloc)
    for s in a.set:
        name, val = s.split('=', 1)
        part, field = name.split('.', 1)
        table = COWD if a.type == 'cowd' else HEADER
        put(out, table, where['footer'] if part == 'footer' else 0, field, val)
    for s in a.gd:
        i, v = s.split('=')
        if v.startswith('@'):
            v = str(struct.unpack_from('<I', out, where['gd'] * SECTOR + 4 * int(v[1:], 0))[0])
        struct.pack_into('<I', out, where['gd'] * SECTOR + 4 * int(i, 0), int(v, 0))
    for s in a.gt:
        t, rest = s.split(':')
        i, v = rest.split('=')
        gt = struct.unpack_from('<I', out, where['gd'] * SECTOR + 4 * int(t, 0))[0]
        struct.pack_into('<I', out, gt * SECTOR + 4 * int(i, 0), int(v, 0))
    for s in a.marker:
        g, rest = s.split(':')
        field, v = rest.split('=')
        off = where['markers'][int(g, 0)] + (0 if field == 'lba' else 8)
        struct.pack_into('<Q' if field == 'lba' else '<I', out, off, int(v, 0))
    if a.break_marker:
        m = where['gt_markers'][0] if a.break_marker == 'gt' else where['gd_marker']
        struct.pack_into('<I', out, m + 12, 7)
    for s in a.poke:
        o, h = s.split('=')
        b = bytes.fromhex(h)
        out[int(o, 0):int(o, 0) + len(b)] = b
    if a.truncate:
        del out[len(out) - a.truncate:]
    with open(a.out, 'wb') as f:
        f.write(out)
    if a.raw:
        with open(a.raw, 'wb') as f:
            f.write(guest)


if __name__ == '__main__':
    main()
