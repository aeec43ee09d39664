#!/usr/bin/env python3
"""make-vhdx.py — VHDX images qemu-img cannot make, written from Microsoft's
[MS-VHDX] specification (file identifier "vhdxfile", two headers "head",
two region tables "regi", the log "loge", the metadata table "metadata",
the BAT of 64-bit entries with sector bitmap entries interleaved, every
checksum CRC-32C):

  make-vhdx.py OUT --size BYTES [options]

  --type dynamic|fixed   fixed: every block allocated (default dynamic)
  --block-size N         payload block size (default 1 MiB)
  --logical N            logical sector size, 512 or 4096 (default 512)
  --physical N           physical sector size (default 4096)
  --data OFF:LEN         the pattern at guest [OFF, OFF+LEN) (repeatable;
                         a dynamic image allocates the blocks it touches)
  --state BLOCK=S        payload block BLOCK gets state S (0..7) and no
                         data: a non-present state reads as zeros
  --reverse              store blocks in reverse guest order
  --dirty-log            leave a log to replay: the file holds the state
                         before the replay (BAT entries, a data sector,
                         zeroed bytes and the last block not yet in place),
                         the log three entries that bring it to the state
                         after it (a later entry overriding an earlier one,
                         the file grown), then a torn entry and a stale one
  --parent               a differencing disk (HasParent, a parent locator)
  --unknown-meta R       an extra metadata item of unknown type, R=1 marked
                         required, R=0 not
  --unknown-region R     the same for a region table entry
  --damage KIND          hostile variants, below (repeatable)
  --raw FILE             also write the guest content (after any replay)

The pattern byte at guest offset b is ((b >> 9) * 37 + (b & 511)) % 251 + 1
(never zero).  Damage kinds: hdr1-crc, hdrs-crc, hdrs-equal-seq,
hdr-version, rt1-crc, rts-crc, regions-overlap, region-log-overlap,
bat-past-eof, bat-small, bat-huge, block-past-eof, block-overlap,
block-in-meta, block-in-header, size-huge, size-unaligned, block-size-bad,
sector-size-bad, meta-outside, meta-overlap, meta-missing, log-crc,
log-desc-seq, log-data-sig, log-writes-header, log-tail-stale, log-truncated,
log-tail-outside, log-version, log-guid-zero (a log with entries but an
empty GUID in the header: not replayed) (the log ones need --dirty-log).
"""
import argparse, struct, sys

MiB = 1 << 20
LOG_OFF, META_OFF = 1 * MiB, 2 * MiB
BAT_OFF = 3 * MiB

G_BAT = bytes.fromhex('6677c22d23f600429d64115e9bfd4a08')
G_META = bytes.fromhex('06a27c8b90479a4bb8fe575f050f886e')
G_PARAMS = bytes.fromhex('3767a1ca36fa434db3b633f0aa44e76b')
G_SIZE = bytes.fromhex('2442a52f1bcd7648b2115dbed83bf4b8')
G_PAGE83 = bytes.fromhex('ab12cabee6b2234593efc309e000c746')
G_LOGICAL = bytes.fromhex('1dbf41816fa90947ba47f233a8faab5f')
G_PHYSICAL = bytes.fromhex('c748a3cd5d4471449cc9e9885251c556')
G_PARENT = bytes.fromhex('2d5fd3a80bb34d45abf7d3d84834ab0c')
G_UNKNOWN = bytes.fromhex('00112233445566778899aabbccddeeff')
LOG_GUID = bytes.fromhex('a1a2a3a4b1b2c1c2d1d2d3d4d5d6d7d8')

NOT_PRESENT, ZERO, FULLY_PRESENT = 0, 2, 6

_T = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _T.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xffffffff
    for b in data:
        crc = _T[(crc ^ b) & 0xff] ^ (crc >> 8)
    return crc ^ 0xffffffff


def seal(buf, off=4):
    """Set the CRC-32C at OFF of BUF (computed with the field zero)."""
    buf[off:off + 4] = bytes(4)
    struct.pack_into('<I', buf, off, crc32c(bytes(buf)))


def pattern(off, n):
    return bytes(((b >> 9) * 37 + (b & 511)) % 251 + 1 for b in range(off, off + n))


def up(n, a):
    return (n + a - 1) // a * a


def header(seq, log_guid, log_len, version=1):
    h = bytearray(4096)
    h[0:4] = b'head'
    struct.pack_into('<Q', h, 8, seq)
    h[16:32] = bytes(range(16, 32))          # file write GUID
    h[32:48] = bytes(range(32, 48))          # data write GUID
    h[48:64] = log_guid
    struct.pack_into('<HHIQ', h, 64, 0, version, log_len, LOG_OFF)
    seal(h)
    return h


def region_table(entries):
    r = bytearray(64 << 10)
    r[0:4] = b'regi'
    struct.pack_into('<I', r, 8, len(entries))
    for i, (guid, off, length, req) in enumerate(entries):
        struct.pack_into('<16sQII', r, 16 + 32 * i, guid, off, length, req)
    seal(r)
    return r


def log_entry(seq, tail, writes, flushed, last, guid=LOG_GUID):
    """One log entry: WRITES is a list of (file offset, 4 KiB bytes) for
    data descriptors or (file offset, zero length) for zero descriptors."""
    n = len(writes)
    dsec = (64 + 32 * n + 4095) // 4096
    datas = [w for w in writes if isinstance(w[1], (bytes, bytearray))]
    e = bytearray(4096 * (dsec + len(datas)))
    e[0:4] = b'loge'
    struct.pack_into('<IIQII16sQQ', e, 8, len(e), tail, seq, n, 0, guid, flushed, last)
    k = 0
    for i, (off, w) in enumerate(writes):
        d = 64 + 32 * i
        if isinstance(w, int):
            struct.pack_into('<4sIQQQ', e, d, b'zero', 0, w, off, seq)
        else:
            e[d:d + 4] = b'desc'
            e[d + 4:d + 8] = w[4092:4096]
            e[d + 8:d + 16] = w[0:8]
            struct.pack_into('<QQ', e, d + 16, off, seq)
            s = 4096 * (dsec + k)
            e[s:s + 4] = b'data'
            struct.pack_into('<I', e, s + 4, seq >> 32)
            e[s + 8:s + 4092] = w[8:4092]
            struct.pack_into('<I', e, s + 4092, seq & 0xffffffff)
            k += 1
    seal(e)
    return e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out')
    ap.add_argument('--size', type=int, required=True)
    ap.add_argument('--type', choices=('dynamic', 'fixed'), default='dynamic')
    ap.add_argument('--block-size', type=int, default=MiB)
    ap.add_argument('--logical', type=int, default=512)
    ap.add_argument('--physical', type=int, default=4096)
    ap.add_argument('--data', action='append', default=[])
    ap.add_argument('--state', action='append', default=[])
    ap.add_argument('--reverse', action='store_true')
    ap.add_argument('--dirty-log', action='store_true')
    ap.add_argument('--parent', action='store_true')
    ap.add_argument('--unknown-meta', type=int)
    ap.add_argument('--unknown-region', type=int)
    ap.add_argument('--damage', action='append', default=[])
    ap.add_argument('--raw')
    a = ap.parse_args()
    dmg = set(a.damage)

    size, bs = a.size, a.block_size
    datas = [tuple(int(x, 0) for x in d.split(':')) for d in a.data]
    # the guest content in memory for small disks; large ones (limits
    # tests) are described by their data ranges alone
    guest = bytearray(size) if size <= 256 * MiB else None
    if guest is not None:
        for o, n in datas:
            guest[o:o + n] = pattern(o, n)[:max(0, size - o)]
    elif a.dirty_log or a.state:
        sys.exit('make-vhdx.py: --dirty-log and --state need a size of at most 256 MiB')

    def block_data(b):
        if guest is not None:
            return bytes(guest[b * bs:(b + 1) * bs])
        buf = bytearray(min(bs, size - b * bs))
        for o, n in datas:
            lo, hi = max(o, b * bs), min(o + n, b * bs + len(buf))
            if lo < hi:
                buf[lo - b * bs:hi - b * bs] = pattern(lo, hi - lo)
        return bytes(buf)
    nblocks = (size + bs - 1) // bs
    chunk = (1 << 23) * a.logical // bs
    nentries = nblocks + (nblocks - 1) // chunk if nblocks else 0
    bat_len = max(MiB, up(nentries * 8, MiB))
    if 'bat-huge' in dmg:
        bat_len = 32 * MiB
    data_off = BAT_OFF + bat_len

    states = {}
    for s in a.state:
        b, v = (int(x, 0) for x in s.split('='))
        states[b] = v
    if a.type == 'fixed':
        alloc = [b for b in range(nblocks) if b not in states]
    else:
        touched = sorted({b for o, n in datas for b in range(o // bs, (o + n - 1) // bs + 1)
                          if b < nblocks})
        alloc = [b for b in touched if b not in states and any(block_data(b))]
    for b, v in states.items():
        guest[b * bs:(b + 1) * bs] = bytes(len(guest[b * bs:(b + 1) * bs]))
    order = list(reversed(alloc)) if a.reverse else alloc
    where = {b: data_off + i * bs for i, b in enumerate(order)}
    fsize = data_off + len(order) * bs

    f = bytearray(fsize)
    f[0:8] = b'vhdxfile'
    creator = 'make-vhdx.py'.encode('utf-16-le')
    f[8:8 + len(creator)] = creator

    # BAT
    bat = bytearray(nentries * 8)
    for b, v in states.items():
        struct.pack_into('<Q', bat, 8 * (b + b // chunk), v)
    for b, off in where.items():
        struct.pack_into('<Q', bat, 8 * (b + b // chunk), off | FULLY_PRESENT)
        f[off:off + bs] = block_data(b).ljust(bs, b'\0')
    if 'block-past-eof' in dmg:
        struct.pack_into('<Q', bat, 0, (fsize + 16 * MiB) | FULLY_PRESENT)
    if 'block-overlap' in dmg and len(order) >= 2:
        i1 = order[1] + order[1] // chunk
        struct.pack_into('<Q', bat, 8 * i1, where[order[0]] | FULLY_PRESENT)
    if 'block-in-meta' in dmg:
        struct.pack_into('<Q', bat, 0, META_OFF | FULLY_PRESENT)
    if 'block-in-header' in dmg:
        struct.pack_into('<Q', bat, 0, 0 | FULLY_PRESENT)
    f[BAT_OFF:BAT_OFF + len(bat)] = bat

    # metadata
    m = bytearray(MiB)
    m[0:8] = b'metadata'
    params = struct.pack('<II', bs if 'block-size-bad' not in dmg else 3 * MiB,
                         (1 if a.type == 'fixed' else 0) | (2 if a.parent else 0))
    vsize = size
    if 'size-huge' in dmg:
        vsize = (64 << 40) + MiB
    if 'size-unaligned' in dmg:
        vsize = size - 100
    logical = 1024 if 'sector-size-bad' in dmg else a.logical
    items = [(G_PARAMS, params, 4 | 0), (G_SIZE, struct.pack('<Q', vsize), 4 | 2),
             (G_PAGE83, bytes(range(16)), 4 | 2), (G_LOGICAL, struct.pack('<I', logical), 4 | 2),
             (G_PHYSICAL, struct.pack('<I', a.physical), 4 | 2)]
    if a.parent:
        loc = bytearray(20)
        loc[0:16] = bytes.fromhex('b7ef4ab09ed1814ab78925b8e9445913')   # VHDX parent type
        items.append((G_PARENT, bytes(loc), 4 | 2))
    if a.unknown_meta is not None:
        items.append((G_UNKNOWN, b'kimg', 4 if a.unknown_meta else 0))
    if 'meta-missing' in dmg:
        items = [it for it in items if it[0] != G_PAGE83]
    off = 64 << 10
    for i, (guid, val, flags) in enumerate(items):
        o = off
        if 'meta-outside' in dmg and guid == G_SIZE:
            o = MiB - 4
        if 'meta-overlap' in dmg and guid == G_PAGE83:
            o = (64 << 10)
        struct.pack_into('<16sIIII', m, 32 + 32 * i, guid, o, len(val), flags, 0)
        if o + len(val) <= len(m):
            m[o:o + len(val)] = val
        off += up(len(val), 8)
    struct.pack_into('<H', m, 10, len(items))
    f[META_OFF:META_OFF + MiB] = m

    # region table
    regions = [(G_BAT, BAT_OFF, bat_len, 1), (G_META, META_OFF, MiB, 1)]
    if 'regions-overlap' in dmg:
        regions[1] = (G_META, BAT_OFF, MiB, 1)
    if 'region-log-overlap' in dmg:
        regions[1] = (G_META, LOG_OFF, MiB, 1)
    if 'bat-past-eof' in dmg:
        regions[0] = (G_BAT, up(fsize, MiB) + 8 * MiB, bat_len, 1)
    if 'bat-small' in dmg:
        regions[0] = (G_BAT, BAT_OFF, 0, 1)
    if a.unknown_region is not None:
        regions.append((G_UNKNOWN, up(fsize, MiB), MiB, a.unknown_region))
        fsize = up(fsize, MiB) + MiB
        f.extend(bytes(fsize - len(f)))
    rt = region_table(regions)
    f[192 << 10:256 << 10] = rt
    f[256 << 10:320 << 10] = rt
    if 'rt1-crc' in dmg or 'rts-crc' in dmg:
        f[(192 << 10) + 100] ^= 0xff
    if 'rts-crc' in dmg:
        f[(256 << 10) + 100] ^= 0xff

    log_len = MiB
    log_guid = bytes(16)
    if a.dirty_log:
        log_guid = LOG_GUID
        f, guest = dirty(f, guest, a, where, order, bs, chunk, dmg)
    # headers: the one at 128 KiB is current (higher sequence number)
    h1 = header(7, bytes(16), log_len)
    h2 = header(8, log_guid, log_len, 2 if 'hdr-version' in dmg else 1)
    if 'log-guid-zero' in dmg:
        h2 = header(8, bytes(16), log_len)
    if 'log-version' in dmg:
        struct.pack_into('<H', h2, 64, 1)
        seal(h2)
    if 'hdrs-equal-seq' in dmg:
        h1 = header(8, bytes(16), log_len)
        h1[200] = 1
        seal(h1)
    if 'hdr1-crc' in dmg or 'hdrs-crc' in dmg:
        h1[300] ^= 0xff
    if 'hdrs-crc' in dmg:
        h2[300] ^= 0xff
    f[64 << 10:(64 << 10) + 4096] = h1
    f[128 << 10:(128 << 10) + 4096] = h2

    with open(a.out, 'wb') as out:
        out.write(f)
    if a.raw:
        with open(a.raw, 'wb') as out:
            if guest is not None:
                out.write(guest)
            else:
                for b in where:
                    out.seek(b * bs)
                    out.write(block_data(b))
                out.truncate(size)


def dirty(f, guest, a, where, order, bs, chunk, dmg):
    """Turn the finished file F (the state after the replay) into the state
    before it plus a log that replays to F.  Returns the file as stored and
    the guest content after the replay."""
    after = bytearray(f)
    if len(order) < 2:
        sys.exit('make-vhdx.py: --dirty-log needs data in at least two blocks')
    # the last stored block grows the file: it lies past the stored end,
    # and only its first sector comes from the log (the rest reads as zeros)
    last_b = order[-1]
    lo = where[last_b]
    after[lo + 4096:lo + bs] = bytes(bs - 4096)
    g0 = last_b * bs
    guest[g0 + 4096:g0 + bs] = bytes(len(guest[g0 + 4096:g0 + bs]))
    # a sector of the first block: the log writes garbage, then (a later
    # entry) the final bytes; 8 KiB of the second block zeroed by the log
    b0, b1 = order[0], order[1]
    s0 = where[b0] + 4096
    z1 = where[b1] + 8192
    after[z1:z1 + 8192] = bytes(8192)
    g1 = b1 * bs + 8192
    guest[g1:g1 + 8192] = bytes(len(guest[g1:g1 + 8192]))
    final = bytes(after[s0:s0 + 4096])

    before = bytearray(after[:lo])
    before[s0:s0 + 4096] = b'\xee' * 4096
    # the BAT sectors holding present entries are not in place yet
    bat_writes = []
    for p in range(BAT_OFF, BAT_OFF + MiB, 4096):
        sec = bytes(after[p:p + 4096])
        if any(sec):
            bat_writes.append((p, sec))
            before[p:p + 4096] = bytes(4096)
    flushed = len(before)
    last = lo + bs + 4096          # not MiB aligned: qemu-img grows the file then
    if 'log-truncated' in dmg:
        flushed = len(before) + 64 * MiB
    e1 = log_entry(100, 0, bat_writes, flushed, last)
    e2 = log_entry(101, 0, [(s0, b'\x5a' * 4096), (z1, 8192)], flushed, last)
    e3 = log_entry(102, 0, [(s0, final), (lo, bytes(after[lo:lo + 4096]))], flushed, last)
    if 'log-desc-seq' in dmg:
        struct.pack_into('<Q', e2, 64 + 24, 7)
        seal(e2)
    if 'log-data-sig' in dmg:
        e3[len(e3) - 4096:len(e3) - 4092] = b'xxxx'
        seal(e3)
    if 'log-writes-header' in dmg:
        e2 = log_entry(101, 0, [(64 << 10, b'\x5a' * 4096)], flushed, last)
    if 'log-tail-outside' in dmg:
        e3 = log_entry(102, 2 * MiB, [(s0, final)], flushed, last)
    if 'log-crc' in dmg:
        for e in (e1, e2, e3):
            e[200] ^= 0xff
    torn = log_entry(103, 0, [(s0, b'\x77' * 4096)], flushed, last)
    torn[5000 % len(torn)] ^= 0xff
    stale = log_entry(50, 0, [(s0, b'\x66' * 4096)], flushed, last)
    log = bytearray(MiB)
    pos = 0
    for e in (e1, e2, e3, torn):
        log[pos:pos + len(e)] = e
        pos += len(e)
    log[512 << 10:(512 << 10) + len(stale)] = stale
    if 'log-tail-stale' in dmg:
        # the head's tail names the stale entry: the walk from there wraps
        # around the log and never reaches the head by sequence numbers
        e3 = log_entry(102, 512 << 10, [(s0, final)], flushed, last)
        log[len(e1) + len(e2):len(e1) + len(e2) + len(e3)] = e3
    before[LOG_OFF:LOG_OFF + MiB] = log
    return before, guest


if __name__ == '__main__':
    main()
