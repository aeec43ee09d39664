#!/bin/bash
# resize: growing every qcow2 fixture made by qemu-img (all cluster sizes,
# refcount widths, v2/v3, extended L2, compressed, zero clusters, chains,
# snapshots, data files, odd sizes) to 64M, against qemu-img resize on a
# twin: same exit code and stdout, kimg's image clean in qemu-img check,
# the same qemu-img info (host allocation aside), the same map (host
# offsets aside), the same content.  (112: unaligned and huge growth.)
# make check: a third of the fixtures (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
. "$KIMG_SRC/tests/cli/twins.sh"

skip_list=" bitmaps.qcow2 bitmap-inuse.qcow2 corrupt-bit.qcow2 shrunk.qcow2 "
for img in $(fixture_names qcow2); do
    case "$skip_list" in *" $img "*) continue ;; esac
    sampled || continue         # check: a third of the fixtures; check-slow: the rest
    grow "$img" 64M
done
done_testing
