#!/bin/bash
# resize: growing qcow2 fixtures by an unaligned amount (the old last
# cluster partial) and to 3 TiB (L1 growth), against qemu-img on twins as
# in 111; a grown image takes qemu-io writes in the new area and stays
# clean; an image with persistent bitmaps is resized as qemu-img resizes it.
# make check: a third of the +1536 and 3T growths (lib.sh sampled);
# check-slow the rest.
. "$(dirname "$0")/lib.sh"
fixtures
. "$KIMG_SRC/tests/cli/twins.sh"

# unaligned growth (the old last cluster is partial), a big jump, and
# growth past the L1 table's range for the small cluster sizes
for img in v2.qcow2 v3.qcow2 cs512.qcow2 cs2M.qcow2 el2.qcow2 el2-2M.qcow2 zlib.qcow2 \
           odd.qcow2 odd-2M.qcow2 snap.qcow2 datafile.qcow2 datafile-raw.qcow2 empty.qcow2; do
    sampled || continue         # check: a third of the growths; check-slow: the rest
    grow "$img" +1536
done
for img in v3.qcow2 cs512.qcow2 el2.qcow2 snap.qcow2 rb1.qcow2 rb64.qcow2; do
    sampled || continue
    grow "$img" 3T
done

# kimg's grown image takes writes in the new area (qemu-io) and stays clean
twins cs4k.qcow2
"$KIMG" resize -q k/cs4k.qcow2 +100M
qemu-io -f qcow2 -c "write -P 0x77 $((100 * 1024 * 1024)) 64k" -c "write -P 0x78 4M 4k" k/cs4k.qcow2 > /dev/null
ok "grown image: clean after qemu-io writes" check_clean k/cs4k.qcow2
qemu-io -f qcow2 -c "read -P 0x77 $((100 * 1024 * 1024)) 64k" -c "read -P 0x11 0 4k" \
    k/cs4k.qcow2 > io.out 2>&1
is "$(grep -c 'Pattern verification failed' io.out)" 0 "grown image: data reads back"

# persistent bitmaps are resized along, as qemu-img does (details: 165)
twins bitmaps.qcow2
kimg resize k/bitmaps.qcow2 +1M
qimg resize q/bitmaps.qcow2 +1M
is "$RC:$QRC" "0:0" "bitmaps: resized by both"
ok "bitmaps: qemu-img check clean" check_clean k/bitmaps.qcow2
same_content "bitmaps" bitmaps.qcow2
done_testing
