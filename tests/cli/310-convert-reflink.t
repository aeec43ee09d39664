#!/bin/bash
# 310-convert-reflink.t — on a file system that shares extents (XFS, when
# root and mkfs.xfs are there), convert clones plainly stored data instead
# of copying it: the output reads the same, takes no new space for its
# data, and zero runs in the source still become holes (convert still
# sparsifies).  Unaligned runs, compressed data, another file system and
# KIMG_CONVERT_NO_REFLINK=1 are copied; so is everything where the output
# must hold its own space (-S 0, -o preallocation, -n into an existing
# image).  (Everywhere else, e.g. on ext4,
# every convert test runs the fallback: the first refused clone.)
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || ! command -v mkfs.xfs > /dev/null; then
    skip_all "needs root and mkfs.xfs (Debian package xfsprogs)"
fi
if ! { truncate -s 400M xfs.img && mkfs.xfs -q -m reflink=1 xfs.img && mkdir -p x &&
       mount -o loop xfs.img x; } 2> /dev/null; then
    skip_all "cannot mount an XFS loop image here"
fi
trap 'umount "$T/x"; _tap_cleanup' EXIT

# bytes of FILE in extents of its own (not shared with another file), up
# to its end (XFS keeps speculative preallocation past it for a while)
own() {
    sync
    filefrag -v "$1" | awk -F: '
        /blocks of [0-9]+ bytes/ { t = $0; sub(/.*\(/, "", t); split(t, w, " "); nb = w[1]; bs = w[4] }
        /^ *[0-9]+:/ { if ($0 ~ /shared/) next
                       split($2, r, "\\.\\."); a = r[1] + 0; b = r[2] + 0
                       if (b >= nb) b = nb - 1
                       if (b >= a) n += b - a + 1 }
        END { print n * bs }'
}
alloc_kib() { du -k "$1" | cut -f1; }
MiB=$((1024 * 1024))

# 24 MiB of data, 4 MiB of explicit zeros inside it, holes around, and an
# unaligned 1.5 KiB tail of data after the last whole block
qemu-img create -q -f raw x/src.raw $((64 * MiB + 1536))
qemu-io -f raw -c 'write -P 7 1M 8M' -c 'write -P 0 9M 4M' -c 'write -P 9 13M 4M' \
    -c 'write -P 3 40M 12M' -c "write -P 5 $((64 * MiB)) 1536" x/src.raw > /dev/null
qemu-img convert -f raw -O qcow2 x/src.raw x/src.qcow2
qemu-img convert -c -f raw -O qcow2 x/src.raw x/src-z.qcow2

kimg convert -f raw -O raw x/src.raw x/out.raw
is "$RC" 0 "raw -> raw on XFS"
ok "raw -> raw reads the same" qemu_oracle_compare x/src.raw x/out.raw
u=$(own x/out.raw)
ok "raw -> raw shares its 24 MiB of data with the source (own: $u bytes)" test "$u" -le 4096
a=$(alloc_kib x/out.raw)
ok "the 4 MiB of zeros became holes (${a} KiB allocated)" test "$a" -le $((24 * 1024 + 8))
cmp -s <(tail -c 1536 x/src.raw) <(tail -c 1536 x/out.raw)
is "$?" 0 "the unaligned tail was copied"

rm -f x/out.raw
KIMG_CONVERT_NO_REFLINK=1 kimg convert -f raw -O raw x/src.raw x/out.raw
ok "KIMG_CONVERT_NO_REFLINK=1 copies (same content)" qemu_oracle_compare x/src.raw x/out.raw
u=$(own x/out.raw)
ok "... into blocks of its own ($u bytes)" test "$u" -ge $((24 * MiB))

for fmt in raw qcow2; do
    rm -f x/out.$fmt
    kimg convert -f qcow2 -O $fmt x/src.qcow2 x/out.$fmt
    is "$RC" 0 "qcow2 -> $fmt on XFS"
    ok "qcow2 -> $fmt reads the same" qemu_oracle_compare x/src.raw x/out.$fmt
    u=$(own x/out.$fmt)
    ok "qcow2 -> $fmt shares its data with the source (own: $u bytes)" test "$u" -lt $MiB
done
ok "the qcow2 output is clean" check_clean x/out.qcow2

rm -f x/out.qcow2
kimg convert -f raw -O qcow2 x/src.raw x/out.qcow2
ok "raw -> qcow2 reads the same" qemu_oracle_compare x/src.raw x/out.qcow2
ok "raw -> qcow2 is clean" check_clean x/out.qcow2
u=$(own x/out.qcow2)
ok "raw -> qcow2 shares its data with the source (own: $u bytes)" test "$u" -lt $MiB
qemu-img map --output=json x/out.qcow2 > map.json
data=$($PY -c 'import json; print(sum(e["length"] for e in json.load(open("map.json")) if e["data"]))')
is "$data" $((24 * MiB + 1536)) "raw -> qcow2 maps only the data (zeros unallocated)"

# 512-byte clusters: allocations that are not whole 4 KiB blocks are copied
rm -f x/out.qcow2
kimg convert -f raw -O qcow2 -o cluster_size=512 x/src.raw x/out.qcow2
ok "512-byte clusters: reads the same" qemu_oracle_compare x/src.raw x/out.qcow2
ok "512-byte clusters: clean" check_clean x/out.qcow2

rm -f x/out.raw
kimg convert -f qcow2 -O raw x/src-z.qcow2 x/out.raw
ok "a compressed source is decompressed, not cloned" qemu_oracle_compare x/src.raw x/out.raw

rm -f x/out.raw
kimg convert -S 0 -f raw -O raw x/src.raw x/out.raw
ok "-S 0 reads the same" qemu_oracle_compare x/src.raw x/out.raw
u=$(own x/out.raw)
is "$u" $((64 * MiB + 4096)) "-S 0: every block the output's own"

rm -f x/out.raw
kimg convert -o preallocation=falloc -f raw -O raw x/src.raw x/out.raw
ok "-o preallocation=falloc reads the same" qemu_oracle_compare x/src.raw x/out.raw
u=$(own x/out.raw)
is "$u" $((64 * MiB + 4096)) "-o preallocation=falloc: every block the output's own"

cp x/src.raw ext.raw
rm -f x/out.raw
kimg convert -f raw -O raw ext.raw x/out.raw
ok "from another file system: copied, the same" qemu_oracle_compare ext.raw x/out.raw

# -n into an existing image: written in place, as qemu-img does
qemu-img create -q -f raw x/old.raw $((64 * MiB + 1536))
qemu-io -f raw -c 'write -P 1 0 64M' x/old.raw > /dev/null
kimg convert -n -f raw -O raw x/src.raw x/old.raw
ok "-n over an existing raw image: reads as the source" qemu_oracle_compare x/src.raw x/old.raw
u=$(own x/old.raw)
ok "-n: its data stays in blocks of its own ($u bytes)" test "$u" -ge $((24 * MiB))
done_testing
