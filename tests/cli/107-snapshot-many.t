#!/bin/bash
# The cost of snapshot -c/-a/-d grows with the file, not with snapshots
# times tables: 65535 snapshots whose own one-entry L1 tables all name one
# L2 table (as snapshots taken with no write in between share tables) are
# deleted, created and applied in seconds (each shared table read once,
# metadata overlap tested by binary search), leaving the image clean; and
# 65535 snapshots naming one 32 MiB L1 table (corrupt: qemu gives each its
# own) are refused at once with one line, the file unchanged, instead of
# reading 2 TiB of L1 entries.
# make check: qemu-img's compare, check and qemu-io's write on the
# 65535-snapshot image (20 s an open each) are kimg's (lib.sh slow_part);
# check-slow runs qemu-img's.  The refusals on the shared L1 table: make
# check takes -d (lib.sh sampled), check-slow -c and -a.
. "$(dirname "$0")/lib.sh"

# craft SRC DST N MODE: N snapshots; MODE distinct (a one-entry L1 table
# each, naming SRC's first L2 table) or shared (one L1 table of 4Mi
# entries for all)
craft() {
    $PY - "$@" <<'EOF'
import struct, sys
src, dst, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
d = bytearray(open(src, 'rb').read())
cs = 1 << struct.unpack('>I', d[20:24])[0]
l1_off = struct.unpack('>Q', d[40:48])[0]
l2 = struct.unpack('>Q', d[l1_off:l1_off + 8])[0] & 0x00fffffffffffe00
size = struct.unpack('>Q', d[24:32])[0]
end = (len(d) + cs - 1) // cs * cs
f = open(dst, 'wb'); f.write(d)
l1size = 1 << 22
ents = []
for i in range(n):
    if mode == 'shared':
        off, sz = end, l1size
    else:
        off, sz = end + i * cs, 1
        f.seek(off); f.write(struct.pack('>Q', l2))
    sid = str(i + 1).encode(); name = b's%d' % i
    e = struct.pack('>QIHHIIQII', off, sz, len(sid), len(name), 0, 0, 0, 0, 24)
    e += struct.pack('>QQQ', 0, size, 0xffffffffffffffff) + sid + name
    ents.append(e + b'\0' * ((-len(e)) % 8))
ents = b''.join(ents)
tab = end + (n * cs if mode != 'shared' else (l1size * 8 + cs - 1) // cs * cs)
f.seek(60); f.write(struct.pack('>IQ', n, tab))
f.seek(tab); f.write(ents); f.truncate(tab + (len(ents) + cs - 1) // cs * cs); f.close()
EOF
}

qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=32 src.qcow2 1M
qemu-io -c "write -P 0x61 0 32k" src.qcow2 > /dev/null
qemu-img convert -O raw src.qcow2 want.raw
craft src.qcow2 many.qcow2 65535 distinct
export KIMG_TIMEOUT=20

kimg_check_clean() { "$KIMG" check -q "$1" > /dev/null 2>&1; }
# qemu-img opens an image of 65535 snapshots in 20 s: make check takes
# kimg's check and compare, check-slow qemu-img's (the oracle)
oracle_clean() {
    if slow_part; then ok "$1: qemu-img check clean" check_clean "$2"; else ok "$1: clean (kimg check)" kimg_check_clean "$2"; fi
}
oracle_same() {
    if slow_part; then ok "$1 (qemu-img compare)" qemu_oracle_compare "$2" "$3"
    else ok "$1 (kimg compare)" "$KIMG" compare -q "$2" "$3"; fi
}
cp many.qcow2 w.qcow2
kimg snapshot -d s4 w.qcow2
is "$RC" 0 "65535 snapshots sharing an L2 table: -d completes (not 124: hung)"
ok "-d: clean (kimg check; check-slow: qemu-img check at the end)" kimg_check_clean w.qcow2
is "$("$KIMG" snapshot -l w.qcow2 | tail -n +3 | wc -l)" 65534 "-d: 65534 snapshots left"
oracle_same "-d: content unchanged" w.qcow2 want.raw
"$KIMG" convert -O raw -l s65534 w.qcow2 s.raw
ok "-d: another snapshot reads as before" cmp s.raw want.raw
kimg snapshot -c new w.qcow2
is "$RC" 0 "65534 snapshots sharing an L2 table: -c completes"
kimg snapshot -c last w.qcow2
is "$RC" 0 "-c up to 65536 snapshots"
kimg snapshot -c one-too-many w.qcow2
is "$RC" 1 "-c past 65536 snapshots refused"
ok "-c: clean (kimg check)" kimg_check_clean w.qcow2
# (a write before -a: qemu-io's in check-slow, kimg convert -n's in check)
if slow_part; then qemu-io -c "write -P 0x62 0 4k" w.qcow2 > /dev/null
else
    cp want.raw x.raw; poke x.raw 0 62626262
    ok "-c: kimg convert -n writes it" "$KIMG" convert -n -f raw -O qcow2 x.raw w.qcow2
    isnt "$(sha x.raw)" "$(sha want.raw)" "-c: the write differs from the snapshot"
fi
kimg snapshot -a s100 w.qcow2
is "$RC" 0 "65536 snapshots sharing an L2 table: -a completes"
oracle_clean "-a" w.qcow2
oracle_same "-a: content is the snapshot's" w.qcow2 want.raw

craft src.qcow2 shared.qcow2 65535 shared
before=$(sha shared.qcow2)
for a in "-d s4" "-c x" "-a s4"; do
    sampled || continue         # check: -d; check-slow: -c and -a
    kimg snapshot $a shared.qcow2
    is "$RC" 1 "65535 snapshots naming one 32 MiB L1 table: $a refused (not 124: hung)"
    err_line "shared L1 table: $a"
    like "$(< "$T/err")" "overlap" "shared L1 table: $a: says the L1 tables overlap"
done
is "$(sha shared.qcow2)" "$before" "shared L1 table: file unchanged"
done_testing
