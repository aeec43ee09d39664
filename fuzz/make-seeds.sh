#!/bin/bash
# make-seeds.sh — regenerate the qcow2 and VHD seed corpora and the embedded base
# image of fuzz_qcow2_snapshot, with qemu-img and qemu-io (plus python3 for
# a few byte patches).  Run from anywhere; writes only:
#   fuzz/corpus/fuzz_qcow2/seed-*            one small image per variant
#   fuzz/corpus/fuzz_qcow2_snapshot/seed-*   patches for the snapshot target
#   fuzz/qcow2_snap_base.h                   the base image as a C array
#   fuzz/corpus/fuzz_vpc/seed-*              small VHDs (qemu-img, make-vhd.py)
#   fuzz/corpus/fuzz_ova/seed-*              small OVAs (tar, tests/cli/ova.sh), an
#                                            OVF and a manifest on their own
#   fuzz/corpus/fuzz_vdi/seed-*              small VDIs (qemu-img, make-vdi.py)
#   fuzz/corpus/fuzz_vhdx/seed-*             VHDXs, packed (make-seeds-vhdx.sh)
#   fuzz/corpus/fuzz_vmdk_desc/seed-*        VMDK descriptors (qemu-img's, hand-made)
#   fuzz/corpus/fuzz_vmdk/seed-*             VMDK sparse extents (qemu-img, make-vmdk.py)
# Reproducers of bugs (crash-*, leak-*, timeout-*, bug-*) are kept.
# Images are tiny: virtual sizes of 64 KiB-1 MiB, cluster_size=512 where
# the variant allows it (extended L2 needs >= 16 KiB clusters).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
q=$here/corpus/fuzz_qcow2
sn=$here/corpus/fuzz_qcow2_snapshot
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$q" "$sn"
rm -f "$q"/seed-* "$sn"/seed-*
cd "$tmp"
ulimit -c 0

qc() { qemu-img create -q -f qcow2 "$@"; }
qio() { qemu-io -f qcow2 "$@" > /dev/null; }
keep() { cp "$1" "$q/seed-$2"; }
# a little data: a full cluster, an unaligned run, the last byte
fill() {
    local img=$1 size=$2
    qio -c "write -P 0x11 0 512" -c "write -P 0x22 1000 1500" \
        -c "write -P 0x33 $((size / 2)) 700" -c "write -P 0x44 $((size - 1)) 1" "$img"
}

# --- compat levels, cluster sizes ------------------------------------------
qc -o compat=0.10,cluster_size=512 a.qcow2 64k; fill a.qcow2 65536; keep a.qcow2 v2-cs512
qc -o compat=1.1,cluster_size=512 a.qcow2 64k;  fill a.qcow2 65536; keep a.qcow2 v3-cs512
qc -o cluster_size=4k a.qcow2 128k;             fill a.qcow2 131072; keep a.qcow2 v3-cs4k
qc -o cluster_size=64k a.qcow2 1M;              qio -c "write -P 0x11 0 512" a.qcow2; keep a.qcow2 v3-cs64k
qc -o cluster_size=512 a.qcow2 0;               keep a.qcow2 empty
qc -o cluster_size=512 a.qcow2 66000;           fill a.qcow2 66000; keep a.qcow2 odd-size
qc -o cluster_size=4k a.qcow2 4G;               qio -c "write -P 0x55 3G 4k" a.qcow2; keep a.qcow2 big-4G

# --- refcount widths ---------------------------------------------------------
for rb in 1 8 64; do
    qc -o cluster_size=512,refcount_bits=$rb a.qcow2 64k; fill a.qcow2 65536; keep a.qcow2 rb$rb
done

# --- lazy refcounts left dirty (qemu-io aborts after writing) ---------------
qc -o cluster_size=512,lazy_refcounts=on a.qcow2 64k
( qemu-io -f qcow2 -c "write -P 0x55 0 4k" -c "write -P 0x66 32k 512" -c abort a.qcow2 \
      || true ) > /dev/null 2>&1
keep a.qcow2 lazy-dirty

# --- extended L2 with partial and zeroed subclusters -------------------------
qc -o cluster_size=16k,extended_l2=on a.qcow2 256k
qio -c "write -P 0x11 0 1k" -c "write -P 0x22 20000 700" -c "write -z 40k 2k" \
    -c "write -z 64k 16k" a.qcow2
keep a.qcow2 extl2

# --- compressed clusters: zlib and zstd, next to a normal one --------------
for ct in zlib zstd; do
    qc -o cluster_size=512,compression_type=$ct a.qcow2 64k
    qio -c "write -c -P 0x61 0 512" -c "write -c -P 0x62 4k 512" -c "write -P 0x63 8k 512" a.qcow2
    keep a.qcow2 comp-$ct
done
qc -o cluster_size=4k a.qcow2 64k
qio -c "write -c -P 0x61 0 4k" -c "write -c -P 0x00 8k 4k" a.qcow2; keep a.qcow2 comp-zlib-4k

# --- zero clusters: allocated zero, unmapped zero, zero over nothing ---------
qc -o cluster_size=512 a.qcow2 64k
qio -c "write -P 0x11 0 4k" -c "write -z 0 1k" -c "write -z -u 2k 1k" -c "write -z 32k 2k" \
    -c "discard 3k 512" a.qcow2
keep a.qcow2 zero
qc -o compat=0.10,cluster_size=512 a.qcow2 64k
qio -c "write -P 0x11 0 4k" -c "write -z 0 1k" a.qcow2; keep a.qcow2 zero-v2

# --- backing file names (not opened by the fuzzers) --------------------------
qemu-img create -q -f raw base.raw 64k
qc -o cluster_size=512 -b base.raw -F raw a.qcow2 64k; fill a.qcow2 65536; keep a.qcow2 backing
qc -o cluster_size=512,compat=0.10 -b base.raw -F raw a.qcow2 64k; keep a.qcow2 backing-v2
qc -o cluster_size=512 -u -b "file:../x/$(printf 'n%.0s' {1..200}).img" -F qcow2 a.qcow2 64k
keep a.qcow2 backing-long

# --- external data file (not opened under NO_BACKING) ------------------------
qc -o cluster_size=512,data_file=data.raw a.qcow2 64k; fill a.qcow2 65536; keep a.qcow2 datafile
qc -o cluster_size=512,data_file=data.raw,data_file_raw=on a.qcow2 64k; keep a.qcow2 datafile-raw

# --- internal snapshots ------------------------------------------------------
qc -o cluster_size=512 snap.qcow2 64k
qio -c "write -P 0x11 0 2k" snap.qcow2
qemu-img snapshot -c first snap.qcow2
qio -c "write -P 0x22 1k 2k" -c "write -z 8k 1k" snap.qcow2
qemu-img snapshot -c "second é" snap.qcow2
qio -c "write -P 0x33 40k 512" snap.qcow2
keep snap.qcow2 snapshots

# --- persistent dirty bitmaps -------------------------------------------------
qc -o cluster_size=512 a.qcow2 64k
qemu-img bitmap --add a.qcow2 b0
qemu-img bitmap --add -g 4k a.qcow2 b1
qio -c "write -P 0x11 0 4k" a.qcow2 2>/dev/null || true
keep a.qcow2 bitmaps
qc -o cluster_size=512 a.qcow2 64k
qemu-img bitmap --add --disable a.qcow2 off
keep a.qcow2 bitmap-disabled
# granularity 512 and an all-ones table entry (kimg stores those; qemu
# reads them): the store path of formats/qcow2/bitmap.c
qc -o cluster_size=512 a.qcow2 1M
qemu-img bitmap --add -g 512 a.qcow2 fine
qemu-img bitmap --add -g 4k a.qcow2 b4k
qio -c "write -P 0x11 0 4k" -c "write -P 0x22 600k 1k" a.qcow2
python3 "$here/../tests/cli/qcow2_bitmaps.py" set-table a.qcow2 b4k 0 1
keep a.qcow2 bitmap-ones

# --- preallocation=metadata: every L2 table present ---------------------------
qc -o cluster_size=512,preallocation=metadata a.qcow2 32k; keep a.qcow2 prealloc-meta

# --- byte patches on a small image: header fields qemu-img never writes -------
qc -o cluster_size=512 a.qcow2 64k; fill a.qcow2 65536
python3 - a.qcow2 "$q" <<'EOF'
import struct, sys
src, out = sys.argv[1], sys.argv[2]
base = bytearray(open(src, 'rb').read())
def patched(name, edits):
    b = bytearray(base)
    for off, fmt, val in edits:
        struct.pack_into(fmt, b, off, val)
    open(out + '/seed-patch-' + name, 'wb').write(b)
patched('crypt-aes', [(32, '>I', 1)])
patched('corrupt-bit', [(72, '>Q', 2)])
patched('unknown-incompat', [(72, '>Q', 1 << 40)])
patched('unknown-autoclear', [(88, '>Q', 1 << 7)])
patched('l1-unaligned', [(40, '>Q', struct.unpack_from('>Q', base, 40)[0] + 8)])
patched('rt-beyond-eof', [(48, '>Q', 1 << 40)])
patched('size-huge', [(24, '>Q', (1 << 62))])
patched('cluster-bits-8', [(20, '>I', 8)])
patched('cluster-bits-22', [(20, '>I', 22)])
patched('refcount-order-7', [(96, '>I', 7)])
patched('nb-snapshots', [(60, '>I', 5), (64, '>Q', 512 * 40)])
# unknown header extension, then a header_length with extra zero bytes
ext_at = struct.unpack_from('>I', base, 100)[0]
b = bytearray(base)
b[ext_at:ext_at + 24] = struct.pack('>II8s', 0x12345678, 8, b'unknown!') + struct.pack('>II', 0, 0) + bytes(8)
open(out + '/seed-patch-unknown-ext', 'wb').write(b)
EOF

# --- the snapshot target: base image as a C array + patches onto it ----------
qc -o cluster_size=512 base.qcow2 16k
qio -c "write -P 0x11 0 1k" base.qcow2
qemu-img snapshot -c s1 base.qcow2
qio -c "write -P 0x22 512 1k" base.qcow2
qemu-img snapshot -c snapshot-two base.qcow2
qemu-img check -q base.qcow2
{
    echo "/* Generated by fuzz/make-seeds.sh: a 16 KiB qcow2 image (cluster_size=512,"
    echo " * $(qemu-img --version | head -1)) with two internal snapshots. */"
    xxd -i < base.qcow2 | sed '1s/^/static const unsigned char snap_base[] = {\n/; $s/$/\n};/'
} > "$here/qcow2_snap_base.h"
python3 - base.qcow2 "$sn" <<'EOF'
import struct, sys
img, out = open(sys.argv[1], 'rb').read(), sys.argv[2]
nb, off = struct.unpack_from('>IQ', img, 60)
# the table: two entries (each 40 bytes + extra + id + name, padded to 8)
end = off
for _ in range(nb):
    ex, idl, nl = struct.unpack_from('>IHH', img, end + 36)[0], *struct.unpack_from('>HH', img, end + 12)
    end += (40 + ex + idl + nl + 7) & ~7
table = img[off:end]
# input layout (fuzz_qcow2_snapshot.c): flags byte, [nb_snapshots be32],
# [snapshots_offset be64], [shift be16], then patch bytes at the table
def seed(name, flags, nb_=None, off_=None, shift=None, patch=b''):
    b = bytes([flags])
    if nb_ is not None: b += struct.pack('>I', nb_)
    if off_ is not None: b += struct.pack('>Q', off_)
    if shift is not None: b += struct.pack('>h', shift)
    open(out + '/seed-' + name, 'wb').write(b + patch)
seed('identity', 0)
seed('table-copy', 0, patch=table)
seed('xor-zero', 8, patch=bytes(len(table)))
seed('nb-3', 1, nb_=3)
seed('nb-0', 1, nb_=0)
seed('nb-max', 1, nb_=0xffffffff)
seed('off-unaligned', 2, off_=off + 8)
seed('off-eof', 2, off_=1 << 40)
seed('off-header', 2, off_=0)
t = bytearray(table); struct.pack_into('>H', t, 12, 0xffff)
seed('id-len-huge', 0, patch=bytes(t))
t = bytearray(table); struct.pack_into('>I', t, 36, 0xfffffff0)
seed('extra-huge', 0, patch=bytes(t))
t = bytearray(table); struct.pack_into('>I', t, 8, 0x7fffffff)
seed('l1-size-huge', 0, patch=bytes(t))
t = bytearray(table); struct.pack_into('>Q', t, 0, struct.unpack_from('>Q', t, 0)[0] + 4)
seed('l1-off-unaligned', 0, patch=bytes(t))
t = bytearray(table); t[40:44] = bytes(4)
seed('extra-vmstate', 0, patch=bytes(t))
# v3 entries with less extra data than the spec requires (0 and 8 bytes):
# check reports them incomplete, check -r rewrites the table
t, p = bytearray(), off
for k in (0, 8):
    ex, idl, nl = struct.unpack_from('>I', img, p + 36)[0], *struct.unpack_from('>HH', img, p + 12)
    t += bytes(-len(t) % 8) + img[p:p + 36] + struct.pack('>I', k) + img[p + 40:p + 40 + k]
    t += img[p + 40 + ex:p + 40 + ex + idl + nl]
    p = (p + 40 + ex + idl + nl + 7) & ~7
seed('extra-short', 0, patch=bytes(t) + bytes(len(table) - len(t)))
seed('l1-patch', 4, shift=-512, patch=bytes([0x80]) + bytes(7) + b'\xff' * 8)
EOF
# --- VHD (fuzz_vpc): qemu-img's own, then small-block ones from make-vhd.py ---
v=$here/corpus/fuzz_vpc
mkdir -p "$v"
rm -f "$v"/seed-*
qemu-img create -q -f vpc a.vhd 1M;                          cp a.vhd "$v/seed-qemu-dynamic-empty"
qemu-img create -q -f vpc -o force_size=on a.vhd 1M;         cp a.vhd "$v/seed-qemu-dynamic-fs"
qemu-img create -q -f vpc -o subformat=fixed a.vhd 32k
qemu-io -f vpc -c "write -P 0x11 0 1k" a.vhd > /dev/null;    cp a.vhd "$v/seed-qemu-fixed"
mk() { python3 "$here/../tests/images/make-vhd.py" "$v/seed-$1" "${@:2}"; }
mk dyn-4k --type dynamic --size 64000 --block-size 4096 --data 0:1000 --data 9000:5000 --data 63000:1000
mk dyn-reverse --type dynamic --size 32768 --block-size 4096 --data 0:8192 --data 20000:100 --reverse
mk dyn-512 --type dynamic --size 8192 --block-size 512 --data 1000:2000 --creator vbox
mk fixed-win --type fixed --size 20480 --data 0:512 --data 19000:1000
mk diff --type diff --size 16384 --block-size 4096 --data 0:512
mk bad-bat --type dynamic --size 16384 --block-size 4096 --data 0:8192 --set bat.1=3

# --- OVA (fuzz_ova): tiny disks in ustar, pax and GNU tars, with manifests ---
o=$here/corpus/fuzz_ova
mkdir -p "$o"
rm -f "$o"/seed-*
(
    . "$here/../tests/cli/ova.sh"
    rm -f ./*.ovf ./*.mf
    qemu-img create -q -f raw r.raw 8k
    qemu-io -f raw -c "write -P 0x11 512 1k" r.raw > /dev/null
    qemu-img create -q -f qcow2 -o cluster_size=512 q.qcow2 64k
    qemu-io -f qcow2 -c "write -P 0x22 0 512" -c "write -P 0x23 40000 700" q.qcow2 > /dev/null
    qemu-img create -q -f vpc v.vhd 64k
    long=disk-$(printf 'l%.0s' $(seq 110)).raw
    cp r.raw "$long"
    ovf_write vm.ovf vmware1 r.raw q.qcow2
    mf_write vm.mf SHA256 vm.ovf r.raw q.qcow2
    ova_tar "$o/seed-ustar-raw-qcow2" ustar vm.ovf vm.mf r.raw q.qcow2
    ovf_write vm.ovf vbox2 v.vhd "$long"
    mf_write vm.mf SHA1 vm.ovf v.vhd "$long"
    ova_tar "$o/seed-pax-vpc-long" pax vm.ovf vm.mf v.vhd "$long"
    ovf_write vm.ovf prefixed "$long"
    ova_tar "$o/seed-gnu-long" gnu vm.ovf "$long"
    cp vm.ovf "$o/seed-descriptor.ovf"
    mf_write "$o/seed-manifest.mf" SHA512 vm.ovf r.raw
)
echo "seeds: $(ls "$o" | wc -l) ova ($(du -sk "$o" | cut -f1) KiB)"
# --- VDI (fuzz_vdi): qemu-img's own, then small-block ones from make-vdi.py ---
d=$here/corpus/fuzz_vdi
mkdir -p "$d"
rm -f "$d"/seed-*
qemu-img create -q -f vdi a.vdi 4M;                          cp a.vdi "$d/seed-qemu-dynamic-empty"
qemu-img create -q -f vdi a.vdi 0;                           cp a.vdi "$d/seed-qemu-zero"
mkd() { python3 "$here/../tests/images/make-vdi.py" "$d/seed-$1" "${@:2}"; }
mkd dyn-4k --size 64000 --block-size 4096 --data 0:1000 --data 9000:5000 --data 63000:1000
mkd dyn-reverse --size 32768 --block-size 4096 --data 0:8192 --data 20000:100 --reverse
mkd zero-entries --size 16384 --block-size 512 --data 0:4096 --zero-block 1 --zero-block 5
mkd static --type static --size 8192 --block-size 1024 --data 100:200
mkd hdr-0x190 --size 8192 --block-size 512 --data 1000:2000 --set header_size=0x190
mkd link --size 4096 --block-size 512 --data 0:512 --set uuid_link=0123456789abcdef0123456789abcdef
mkd dup --size 4096 --block-size 512 --data 0:2048 --set map.3=0
mkd past-eof --size 4096 --block-size 512 --data 0:2048 --truncate -100
mkd odd --size 5000 --block-size 1024 --data 4000:1000

echo "seeds: $(ls "$d" | wc -l) vdi ($(du -sk "$d" | cut -f1) KiB)"
echo "seeds: $(ls "$v" | wc -l) vpc ($(du -sk "$v" | cut -f1) KiB)"

# --- VMDK descriptors (fuzz_vmdk_desc): qemu-img's, then hand-made ones -----
vd=$here/corpus/fuzz_vmdk_desc
mkdir -p "$vd"
rm -f "$vd"/seed-*
for sub in monolithicFlat twoGbMaxExtentFlat twoGbMaxExtentSparse; do
    qemu-img create -q -f vmdk -o subformat=$sub d.vmdk 3G; cp d.vmdk "$vd/seed-qemu-$sub"
    rm -f d*.vmdk
done
qemu-img create -q -f vmdk base.vmdk 1M
qemu-img create -q -f vmdk -b base.vmdk -F vmdk d.vmdk
dd if=d.vmdk of="$vd/seed-qemu-embedded-delta" bs=512 skip=1 count=20 status=none
hd='# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="%s"\n'
printf "$hd"'RW 2048 ZERO\nRW 100 ZERO\n' monolithicFlat > "$vd/seed-zero"
printf "$hd"'RW 8 ZERO\nRDONLY 8 FLAT "a b.bin" 3\nNOACCESS 8 VMFS "v"\n' vmfs > "$vd/seed-mixed"
printf "$hd"'RW 8 VMFSSPARSE "x-delta.vmdk"\nparentFileNameHint="x.vmdk"\n' vmfsSparse \
    | sed 's/$/\r/' > "$vd/seed-crlf-vmfssparse"
printf '# comment\n  \nversion = 2\nencoding="UTF-8"\nCID = 0000abcd\nparentCID=ffffffff\n'\
'createType = "monolithicFlat"\nRW 1 ZERO\nchangeTrackPath="x-ctk.vmdk"\nddb.uuid = "60 00"\n' \
    > "$vd/seed-vmware-style"
echo "seeds: $(ls "$vd" | wc -l) vmdk descriptors"

# --- VMDK sparse extents (fuzz_vmdk): qemu-img's, then make-vmdk.py's -------
vs=$here/corpus/fuzz_vmdk
mkdir -p "$vs"
rm -f "$vs"/seed-*
qemu-img create -q -f vmdk s.vmdk 1M
qemu-io -f vmdk -c 'write -P 0x11 0 1k' s.vmdk > /dev/null;   cp s.vmdk "$vs/seed-qemu-sparse"
qemu-img create -q -f vmdk -o zeroed_grain=on s.vmdk 1M
qemu-io -f vmdk -c 'write -z 0 64k' s.vmdk > /dev/null;       cp s.vmdk "$vs/seed-qemu-zeroed"
truncate -s 1M r.raw
qemu-io -f raw -c 'write -P 0x11 0 100k' -c 'write -P 0x22 600k 64k' r.raw > /dev/null
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized r.raw s.vmdk
cp s.vmdk "$vs/seed-qemu-stream"
rm -f s.vmdk r.raw
mkv() { python3 "$here/../tests/images/make-vmdk.py" "$vs/seed-$1" "${@:2}"; }
mkv small-v3 --type sparse --version 3 --size 65536 --grain 1 --gtes 16 --data 0:1000 --data 30000:3000
mkv small-v2 --type sparse --version 2 --size 65536 --grain 2 --gtes 8 --data 0:1000 --zero 8192:4096
mkv stream-vmware --type stream --size 131072 --grain 16 --gtes 8 --data 0:5000 --data 100000:20000
mkv stream-bad-lba --type stream --size 65536 --grain 16 --gtes 8 --data 0:20000 --marker 1:lba=0
mkv cowd --type cowd --size 65536 --grain 1 --data 0:2000 --data 60000:5536
mkv gt-dup --type sparse --size 65536 --grain 1 --gtes 16 --data 0:20000 --gd 1=@0
unset -f mkv
echo "seeds: $(ls "$vs" | wc -l) vmdk sparse extents ($(du -sk "$vs" | cut -f1) KiB)"
echo "seeds: $(ls "$q" | wc -l) qcow2 ($(du -sk "$q" | cut -f1) KiB)," \
     "$(ls "$sn" | wc -l) snapshot; base image $(stat -c %s base.qcow2) bytes"
"$here/make-seeds-vhdx.sh"
