#!/usr/bin/env python3
"""make-vdi.py — VDI images qemu-img cannot make, written from VirtualBox's
VDI layout (VDICore.h: a 72-byte pre-header of text, signature 0xbeda107f
and version 1.1, the header, a block map of little-endian slot numbers
with 0xffffffff = free and 0xfffffffe = zero, then the data slots):

  make-vdi.py OUT --size BYTES [options]

  --type dynamic|static   (default dynamic; static allocates every block)
  --vbox            VirtualBox's layout: its text, header size 0x190 with
                    the LCHS geometry, block map and data at 1 MiB
                    boundaries, creation/modification UUIDs, a comment
  --comment TEXT    the header's comment (with --vbox)
  --block-size N    block size (default 1 MiB)
  --data OFF:LEN    write the pattern at guest [OFF, OFF+LEN) (repeatable;
                    dynamic images allocate the blocks it touches, in order)
  --zero-block B    block B's entry is "zero" (0xfffffffe): reads as zeros
                    whatever was written there (repeatable)
  --reverse         allocate the slots in reverse guest order
  --raw FILE        also write the guest content as a raw file
  --set FIELD=VAL   patch a header field after building: signature,
                    version, header_size, image_type, image_flags,
                    offset_bmap, offset_data, sector_size, disk_size,
                    block_size, block_extra, blocks_in_image,
                    blocks_allocated, uuid_link, uuid_parent (VAL for a
                    UUID: 32 hex digits), or map.<index> (a map entry)
  --truncate N      cut the file to N bytes (negative: remove N at the end)

The pattern byte at guest offset b is ((b >> 9) * 37 + (b & 511)) % 251 + 1
(never zero), so a reader off by a sector or a block shows up.
"""
import argparse, struct, uuid

FIELDS = {  # name: (offset from the start of the file, struct format)
    'signature': (0x40, '<I'), 'version': (0x44, '<I'), 'header_size': (0x48, '<I'),
    'image_type': (0x4c, '<I'), 'image_flags': (0x50, '<I'), 'comment': (0x54, '256s'),
    'offset_bmap': (0x154, '<I'), 'offset_data': (0x158, '<I'),
    'cylinders': (0x15c, '<I'), 'heads': (0x160, '<I'), 'sectors': (0x164, '<I'),
    'sector_size': (0x168, '<I'), 'disk_size': (0x170, '<Q'), 'block_size': (0x178, '<I'),
    'block_extra': (0x17c, '<I'), 'blocks_in_image': (0x180, '<I'),
    'blocks_allocated': (0x184, '<I'), 'uuid_image': (0x188, '16s'),
    'uuid_last_snap': (0x198, '16s'), 'uuid_link': (0x1a8, '16s'),
    'uuid_parent': (0x1b8, '16s'),
    # VDIHEADER1PLUS (header size 0x190): the LCHS geometry
    'lchs_cylinders': (0x1c8, '<I'), 'lchs_heads': (0x1cc, '<I'),
    'lchs_sectors': (0x1d0, '<I'), 'lchs_sector_size': (0x1d4, '<I'),
}
FREE, ZERO = 0xffffffff, 0xfffffffe
MiB = 1 << 20


def pattern(off, n):
    return bytes(((b >> 9) * 37 + (b & 511)) % 251 + 1 for b in range(off, off + n))


def put(buf, name, val):
    off, fmt = FIELDS[name]
    struct.pack_into(fmt, buf, off, val)


def align(n, a):
    return (n + a - 1) // a * a


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out')
    ap.add_argument('--size', type=int, required=True)
    ap.add_argument('--type', choices=('dynamic', 'static'), default='dynamic')
    ap.add_argument('--vbox', action='store_true')
    ap.add_argument('--comment', default='')
    ap.add_argument('--block-size', type=int, default=MiB)
    ap.add_argument('--data', action='append', default=[])
    ap.add_argument('--zero-block', type=int, action='append', default=[])
    ap.add_argument('--reverse', action='store_true')
    ap.add_argument('--raw')
    ap.add_argument('--set', action='append', default=[])
    ap.add_argument('--truncate', type=lambda v: int(v, 0))
    a = ap.parse_args()

    size, bs = a.size, a.block_size
    guest = bytearray(size)
    for d in a.data:
        o, n = (int(x, 0) for x in d.split(':'))
        guest[o:o + n] = pattern(o, n)
    blocks = (size + bs - 1) // bs

    hdr = bytearray(512)
    text = ('<<< Oracle VM VirtualBox Disk Image >>>\n' if a.vbox
            else '<<< QEMU VM Virtual Disk Image >>>\n').encode()
    hdr[0:len(text)] = text
    put(hdr, 'signature', 0xbeda107f)
    put(hdr, 'version', 0x00010001)
    put(hdr, 'image_type', 1 if a.type == 'dynamic' else 2)
    put(hdr, 'sector_size', 512)
    put(hdr, 'disk_size', size)
    put(hdr, 'block_size', bs)
    put(hdr, 'blocks_in_image', blocks)
    if a.vbox:
        put(hdr, 'header_size', 0x190)
        put(hdr, 'comment', a.comment.encode())
        bmap = align(72 + 0x190, MiB)
        data = align(bmap + 4 * blocks, MiB)
        # VirtualBox stores its UUIDs little-endian (RTUUID); any 16 bytes do
        put(hdr, 'uuid_image', uuid.UUID(int=0x0123456789abcdef0123456789abcdef).bytes_le)
        put(hdr, 'uuid_last_snap', uuid.UUID(int=0xfedcba9876543210fedcba9876543210).bytes_le)
        put(hdr, 'lchs_sector_size', 512)
    else:
        put(hdr, 'header_size', 0x180)
        bmap = 0x200
        data = bmap + align(4 * blocks, 512)
    put(hdr, 'offset_bmap', bmap)
    put(hdr, 'offset_data', data)

    entries = [FREE] * blocks
    if a.type == 'static':
        used = list(range(blocks))
    else:
        used = [i for i in range(blocks) if any(guest[i * bs:(i + 1) * bs])]
    if a.reverse:
        used.reverse()
    body = bytearray()
    for slot, i in enumerate(used):
        entries[i] = slot
        blk = bytes(guest[i * bs:(i + 1) * bs])
        body += blk + bytes(bs - len(blk))
    for z in a.zero_block:      # the data stays in its slot, the entry says zero
        entries[z] = ZERO
        guest[z * bs:(z + 1) * bs] = bytes(len(guest[z * bs:(z + 1) * bs]))
    put(hdr, 'blocks_allocated', sum(e < ZERO for e in entries))

    for f in a.set:
        name, val = f.split('=', 1)
        if name.startswith('map.'):
            entries[int(name[4:])] = int(val, 0)
        elif FIELDS[name][1] == '16s':
            put(hdr, name, bytes.fromhex(val))
        else:
            put(hdr, name, int(val, 0))

    img = bytearray(data) if data >= 512 else bytearray(512)
    img[0:512] = hdr
    img[bmap:data] = b'\xff' * (data - bmap)    # spare entries: free
    mp = b''.join(struct.pack('<I', e) for e in entries)
    img[bmap:bmap + len(mp)] = mp
    img = bytes(img[:data]) + bytes(body)
    if a.truncate is not None:
        img = img[:a.truncate]
    open(a.out, 'wb').write(img)
    if a.raw:
        open(a.raw, 'wb').write(guest)


if __name__ == '__main__':
    main()
