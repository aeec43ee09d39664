#!/bin/bash
# resize: growing every qcow2 fixture made by qemu-img (all cluster sizes,
# refcount widths, v2/v3, extended L2, compressed, zero clusters, chains,
# snapshots, data files, odd sizes) to 64M, against qemu-img resize on a
# twin: same exit code and stdout, kimg's image clean in qemu-img check,
# the same qemu-img info (host allocation aside), the same map (host
# offsets aside), the same content.  (112: unaligned and huge growth.)
# make check: a quarter of the fixtures, one of each kind (lib.sh
# sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
. "$KIMG_SRC/tests/cli/twins.sh"
. "$KIMG_SRC/tests/cli/twins-once.sh"   # (its cheaper twins, grow, twin_state)

skip_list=" bitmaps.qcow2 bitmap-inuse.qcow2 corrupt-bit.qcow2 shrunk.qcow2 "
imgs=()
for img in $(fixture_names qcow2); do
    case "$skip_list" in *" $img "*) ;; *) imgs+=("$img") ;; esac
done
# check: a quarter of the fixtures, check-slow the rest; ordered so that
# check's quarter (the file's first sampled loop) takes one of each kind:
# v2, 512-byte and 2M clusters, 1-bit refcounts, dirty lazy refcounts,
# extended L2, compressed, snapshots, a backing file, preallocated, an
# odd size, a data file
reps_first 4 "v2.qcow2 cs512.qcow2 cs2M.qcow2 rb1.qcow2 lazy-dirty.qcow2 el2.qcow2 zlib.qcow2 snap.qcow2 \
    chain-top.qcow2 prealloc-full.qcow2 odd-2M.qcow2 datafile.qcow2" "${imgs[@]}"
for img in "${order[@]}"; do
    sampled 4 || continue
    grow "$img" 64M
done
done_testing
