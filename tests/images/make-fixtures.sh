#!/bin/bash
# make-fixtures.sh OUTDIR — generate every qcow2/raw fixture variant the CLI
# tests compare against qemu-img, using qemu-img and qemu-io only (plus a
# little shell for the raw source of the compressed images).  Fast (a few
# seconds); the tests cache the result in $KIMG_BUILD/fixtures (lib.sh,
# fixtures()), regenerated when this script or qemu-img changes.
#
# Every image gets the same data pattern (fill): distinct bytes at 0, at an
# unaligned offset crossing a cluster boundary, near the middle, and the very
# last byte, so a reader that is off by a cluster or a sector shows up.
# The names are listed in OUTDIR/LIST (one per line: NAME FORMAT) so tests
# can loop over them; images that are part of a chain are listed at the top.
set -eu
out=${1:?usage: make-fixtures.sh OUTDIR}
mkdir -p "$out"
cd "$out"
rm -f -- *.qcow2 *.raw LIST
ulimit -c 0   # the lazy-refcount fixture aborts qemu-io on purpose

MiB=$((1024 * 1024))
list() { echo "$1 $2" >> LIST; }
qio() { qemu-io "$@" > /dev/null; }          # qemu-io FMT-ARGS... -c ...

# fill IMG FMT SIZE: the common data pattern.
fill() {
    local img=$1 fmt=$2 size=$3
    qio -f "$fmt" \
        -c "write -P 0x11 0 4k" \
        -c "write -P 0x22 $((64 * 1024 - 1000)) 5000" \
        -c "write -P 0x33 $((size / 2 + 512)) 3000" \
        -c "write -P 0x44 $((size - 1)) 1" "$img"
}
qc() { qemu-img create -q "$@"; }

# --- compat, cluster sizes, refcount widths (4 MiB each) -------------------
qc -f qcow2 -o compat=0.10 v2.qcow2 4M;        fill v2.qcow2 qcow2 $((4 * MiB)); list v2.qcow2 qcow2
qc -f qcow2 -o compat=1.1 v3.qcow2 4M;         fill v3.qcow2 qcow2 $((4 * MiB)); list v3.qcow2 qcow2
for cs in 512 4k 64k; do
    qc -f qcow2 -o cluster_size=$cs cs$cs.qcow2 4M
    fill cs$cs.qcow2 qcow2 $((4 * MiB)); list cs$cs.qcow2 qcow2
done
qc -f qcow2 -o cluster_size=2M cs2M.qcow2 6M; fill cs2M.qcow2 qcow2 $((6 * MiB)); list cs2M.qcow2 qcow2
for rb in 1 2 4 8 16 32 64; do
    qc -f qcow2 -o refcount_bits=$rb rb$rb.qcow2 4M
    fill rb$rb.qcow2 qcow2 $((4 * MiB)); list rb$rb.qcow2 qcow2
done

# --- lazy refcounts: one clean, one left dirty (qemu-io aborts) -------------
qc -f qcow2 -o lazy_refcounts=on lazy-clean.qcow2 4M
fill lazy-clean.qcow2 qcow2 $((4 * MiB)); list lazy-clean.qcow2 qcow2
qc -f qcow2 -o lazy_refcounts=on lazy-dirty.qcow2 4M
( qemu-io -f qcow2 -c "write -P 0x55 0 64k" -c "write -P 0x66 1M 4k" -c abort \
      lazy-dirty.qcow2 || true ) > /dev/null 2>&1
list lazy-dirty.qcow2 qcow2

# --- extended L2: partly written subclusters, a zero subcluster ------------
qc -f qcow2 -o extended_l2=on el2.qcow2 4M
fill el2.qcow2 qcow2 $((4 * MiB))
qio -f qcow2 -c "write -P 0x77 $((128 * 1024 + 2048)) 1024" \
    -c "write -z $((256 * 1024)) 4k" -c "write -z $((64 * 1024 + 8192)) 2048" el2.qcow2
list el2.qcow2 qcow2
qc -f qcow2 -o extended_l2=on,cluster_size=2M el2-2M.qcow2 6M
fill el2-2M.qcow2 qcow2 $((6 * MiB)); list el2-2M.qcow2 qcow2

# --- compressed clusters: convert -c (zlib, zstd) and qemu-io write -c ------
# Source: patterned raw with one incompressible cluster (an LCG, so it is
# the same bytes every time) that qemu stores uncompressed.
qc -f raw src.raw 1M
fill src.raw raw $MiB
awk 'BEGIN { x = 12345; for (i = 0; i < 65536; i++) { x = (x * 1103515245 + 12345) % 2147483648; printf "%c", int(x / 8388608) } }' \
    | LC_ALL=C dd of=src.raw bs=64k seek=4 conv=notrunc status=none
qemu-img convert -c -f raw -O qcow2 src.raw zlib.qcow2;                          list zlib.qcow2 qcow2
qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd src.raw zstd.qcow2; list zstd.qcow2 qcow2
qemu-img convert -c -f raw -O qcow2 -o cluster_size=4k src.raw zlib-4k.qcow2;   list zlib-4k.qcow2 qcow2
rm -f src.raw
qc -f qcow2 wcomp.qcow2 4M
qio -f qcow2 -c "write -c -P 0x12 0 64k" -c "write -c -P 0x34 2M 64k" -c "write -P 0x56 3M 4k" wcomp.qcow2
list wcomp.qcow2 qcow2

# --- zero clusters: allocated zero, unmapped zero, zero over nothing --------
qc -f qcow2 zero.qcow2 4M
fill zero.qcow2 qcow2 $((4 * MiB))
qio -f qcow2 -c "write -P 0x21 1M 128k" -c "write -P 0x22 3M 64k" \
    -c "write -z 1M 64k" -c "write -z -u 3M 64k" -c "write -z 512k 64k" zero.qcow2
list zero.qcow2 qcow2
qc -f qcow2 discard.qcow2 4M
qio -f qcow2 -c "write -P 0x31 0 1M" -c "discard 256k 256k" discard.qcow2
list discard.qcow2 qcow2

# --- backing chains: raw <- qcow2 <- qcow2, qcow2 <- qcow2 -------------------
qc -f raw chain-base.raw 4M
fill chain-base.raw raw $((4 * MiB))
qc -f qcow2 -b chain-base.raw -F raw chain-mid.qcow2
qio -f qcow2 -c "write -P 0x61 64k 64k" -c "write -z 0 4k" chain-mid.qcow2
qc -f qcow2 -b chain-mid.qcow2 -F qcow2 chain-top.qcow2
qio -f qcow2 -c "write -P 0x62 96k 8k" -c "write -P 0x63 2M 512" chain-top.qcow2
list chain-base.raw raw; list chain-mid.qcow2 qcow2; list chain-top.qcow2 qcow2
qc -f qcow2 -o compat=0.10 chain2-base.qcow2 4M
fill chain2-base.qcow2 qcow2 $((4 * MiB))
qc -f qcow2 -o compat=0.10 -b chain2-base.qcow2 -F qcow2 chain2-top.qcow2
qio -f qcow2 -c "write -P 0x71 0 512" -c "write -z 2M 64k" chain2-top.qcow2
list chain2-base.qcow2 qcow2; list chain2-top.qcow2 qcow2
# An overlay larger than its backing file: past the backing end reads zeros.
qc -f qcow2 short-base.qcow2 1M
fill short-base.qcow2 qcow2 $MiB
qc -f qcow2 -b short-base.qcow2 -F qcow2 short-top.qcow2 4M
qio -f qcow2 -c "write -P 0x72 3M 4k" short-top.qcow2
list short-base.qcow2 qcow2; list short-top.qcow2 qcow2
# Backing format not recorded, so probed.  qemu-img 7.2 refuses to create
# that, so the backing-format header extension (magic 0xe2792aca, right
# after the 112-byte v3 header) is renamed to an unknown magic ("KIMG"),
# which readers must skip.
qc -f qcow2 -b chain-base.raw -F raw noformat-top.qcow2
qio -f qcow2 -c "write -P 0x64 1M 4k" noformat-top.qcow2
[ "$(od -An -tx1 -j112 -N4 noformat-top.qcow2)" = " e2 79 2a ca" ]
printf 'KIMG' | dd of=noformat-top.qcow2 bs=1 seek=112 conv=notrunc status=none
list noformat-top.qcow2 qcow2

# --- internal snapshots --------------------------------------------------
qc -f qcow2 snap.qcow2 4M
fill snap.qcow2 qcow2 $((4 * MiB))
qemu-img snapshot -c first snap.qcow2
qio -f qcow2 -c "write -P 0x81 0 64k" snap.qcow2
qemu-img snapshot -c second snap.qcow2
qio -f qcow2 -c "write -P 0x82 1M 4k" snap.qcow2
list snap.qcow2 qcow2

# --- preallocation ---------------------------------------------------------
for p in off metadata falloc full; do
    qc -f qcow2 -o preallocation=$p prealloc-$p.qcow2 4M
    list prealloc-$p.qcow2 qcow2
done
fill prealloc-metadata.qcow2 qcow2 $((4 * MiB))
for p in off falloc full; do
    qc -f raw -o preallocation=$p prealloc-$p.raw 1M
    list prealloc-$p.raw raw
done

# --- odd virtual sizes -----------------------------------------------------
qc -f qcow2 odd.qcow2 $((3 * MiB + 1536))           # not a cluster multiple
fill odd.qcow2 qcow2 $((3 * MiB + 1536)); list odd.qcow2 qcow2
qc -f qcow2 -o cluster_size=2M odd-2M.qcow2 $((3 * MiB + 512))
fill odd-2M.qcow2 qcow2 $((3 * MiB + 512)); list odd-2M.qcow2 qcow2
qc -f qcow2 empty.qcow2 0;                           list empty.qcow2 qcow2

# --- raw with holes --------------------------------------------------------
qc -f raw holes.raw 4M
fill holes.raw raw $((4 * MiB)); list holes.raw raw
qc -f raw odd.raw $((MiB + 512))
fill odd.raw raw $((MiB + 512)); list odd.raw raw

# --- external data file ------------------------------------------------------
qc -f qcow2 -o data_file=datafile.data datafile.qcow2 4M
fill datafile.qcow2 qcow2 $((4 * MiB)); list datafile.qcow2 qcow2
qc -f qcow2 -o data_file=datafile-raw.data,data_file_raw=on datafile-raw.qcow2 4M
fill datafile-raw.qcow2 qcow2 $((4 * MiB)); list datafile-raw.qcow2 qcow2

# --- more layouts: bitmaps, amended and resized images, corrupt flag -----
qc -f qcow2 bitmaps.qcow2 4M
fill bitmaps.qcow2 qcow2 $((4 * MiB))
qemu-img bitmap --add bitmaps.qcow2 b0
qemu-img bitmap --add -g 128k bitmaps.qcow2 "b1 with space"
qemu-img bitmap --disable bitmaps.qcow2 "b1 with space"
qio -f qcow2 -c "write -P 0x91 1M 64k" bitmaps.qcow2
list bitmaps.qcow2 qcow2
qc -f qcow2 bitmap-inuse.qcow2 4M                 # qemu-io aborts: "in-use" flag
qemu-img bitmap --add bitmap-inuse.qcow2 b0
( qemu-io -f qcow2 -c "write -P 0x92 0 64k" -c abort bitmap-inuse.qcow2 || true ) > /dev/null 2>&1
list bitmap-inuse.qcow2 qcow2
# amend rewrites the refcount structures elsewhere / downgrades to v2
qc -f qcow2 -o cluster_size=4k amend-rb4.qcow2 4M   # (64k: amend takes 2 s)
fill amend-rb4.qcow2 qcow2 $((4 * MiB))
qio -f qcow2 -c "write -z 1M 64k" amend-rb4.qcow2
qemu-img amend -o refcount_bits=4 amend-rb4.qcow2;   list amend-rb4.qcow2 qcow2
qc -f qcow2 amend-v2.qcow2 4M
fill amend-v2.qcow2 qcow2 $((4 * MiB))
qio -f qcow2 -c "write -P 0x93 1M 64k" -c "write -z 1M 4k" amend-v2.qcow2
qemu-img amend -o compat=0.10 amend-v2.qcow2;        list amend-v2.qcow2 qcow2
# resize: the L1 table grows (and moves); a shrink drops clusters
qc -f qcow2 -o cluster_size=4k grown.qcow2 1M
fill grown.qcow2 qcow2 $MiB
qemu-img resize -q grown.qcow2 +63M
qio -f qcow2 -c "write -P 0x94 60M 4k" grown.qcow2; list grown.qcow2 qcow2
qc -f qcow2 shrunk.qcow2 4M
fill shrunk.qcow2 qcow2 $((4 * MiB))
qemu-img resize -q --shrink shrunk.qcow2 $((2 * MiB + 1024));  list shrunk.qcow2 qcow2
# the corrupt bit set (qemu opens such images read-only only)
qc -f qcow2 corrupt-bit.qcow2 4M
fill corrupt-bit.qcow2 qcow2 $((4 * MiB))
printf '\002' | dd of=corrupt-bit.qcow2 bs=1 seek=79 conv=notrunc status=none
list corrupt-bit.qcow2 qcow2

# --- more chains: subclusters, compression and zeros over a backing file,
#     an overlay smaller than its backing file, a data file with a backing
qc -f qcow2 -o extended_l2=on -b chain-base.raw -F raw el2-top.qcow2
qio -f qcow2 -c "write -P 0xa1 2048 1024" -c "write -z 64k 2k" -c "write -P 0xa2 $((2 * MiB + 512)) 100" \
    el2-top.qcow2
list el2-top.qcow2 qcow2
qc -f qcow2 -b chain-base.raw -F raw comp-top.qcow2
qio -f qcow2 -c "write -c -P 0xa3 0 64k" -c "write -z -u $((2 * MiB)) 64k" comp-top.qcow2
list comp-top.qcow2 qcow2
qc -f qcow2 -b chain-base.raw -F raw small-top.qcow2 1M
qio -f qcow2 -c "write -P 0xa4 4k 4k" small-top.qcow2;  list small-top.qcow2 qcow2
qc -f qcow2 -o data_file=df-top.data -b chain-base.raw -F raw df-top.qcow2
qio -f qcow2 -c "write -P 0xa5 1M 64k" df-top.qcow2;   list df-top.qcow2 qcow2

# --- raw files of lengths qemu-img would round -----------------------------
# (No huge sparse image here: tests loop over LIST and flatten every entry;
# the 1 TiB case lives in tests/cli/033-big-sparse.t.)
truncate -s 1000 tiny.raw                          # not a multiple of 512
qio -f raw -c "write -P 0xb4 0 512" tiny.raw;       list tiny.raw raw
truncate -s $((MiB + 100)) odd100.raw
qio -f raw -c "write -P 0xb5 $MiB 100" odd100.raw;  list odd100.raw raw

exit 0
