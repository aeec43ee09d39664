#!/bin/bash
# VHDXs from tests/images/make-vhdx.py (written from [MS-VHDX]) that
# qemu-img cannot make: 4096-byte logical sectors (qemu-img 7.2 cannot
# open them either: kimg reads them, vhdiinfo is the second reader), every
# payload block state, blocks stored out of order, a partial last block,
# unknown metadata items and regions that are not required, one damaged
# header or region table copy (the other one counts).  The generator's raw
# content is what every reading must give.
# make check: every layout, one 4K-sector type and one of the block sizes
# (lib.sh sampled: 4 MiB; 64 and 256 MiB, whose images take most of the
# time, fall to check-slow with the rest).
. "$(dirname "$0")/lib.sh"
MK="$PY $KIMG_SRC/tests/images/make-vhdx.py"
MiB=$((1024 * 1024))
# reads IMAGE RAW NAME: kimg's content of IMAGE is RAW (convert, checksum, compare)
reads() {
    kimg convert -O raw "$1" out.raw
    ok "$3: convert -O raw gives the generator's content" cmp -s out.raw "$2"
    kimg checksum "$1"; local a; a=$(cut -d' ' -f1 "$T/out")
    kimg checksum -f raw "$2"
    is "$a" "$(cut -d' ' -f1 "$T/out")" "$3: checksum as the raw content's"
    kimg compare -F raw "$1" "$2"
    is "$RC" 0 "$3: compare with the raw content"
}
# qreads IMAGE RAW NAME: qemu-img reads RAW too, and kimg's info/map/check are its
qreads() {
    qemu-img convert -f vhdx -O raw "$1" q.raw
    ok "$3: qemu-img reads the generator's content" cmp -s q.raw "$2"
    oracle "$3: info json" info --output=json "$1"
    oracle "$3: map json" map --output=json "$1"
    oracle "$3: check" check "$1"
}

# ---- the generator against qemu-img ---------------------------------------------
$MK g.vhdx --size $((5 * MiB + 512)) --data 0:4096 --data 3000000:100000 \
    --data $((5 * MiB - 512)):1024 --raw g.raw
qreads g.vhdx g.raw "dynamic, partial last block"
reads g.vhdx g.raw "dynamic, partial last block"
$MK f.vhdx --type fixed --size $((6 * MiB)) --block-size $((2 * MiB)) --data 100:5000 --raw f.raw
qreads f.vhdx f.raw "fixed, 2 MiB blocks"
reads f.vhdx f.raw "fixed, 2 MiB blocks"
$MK r.vhdx --size $((8 * MiB)) --data 0:1000 --data $((3 * MiB)):$((2 * MiB)) \
    --data $((7 * MiB)):4096 --reverse --raw r.raw
qreads r.vhdx r.raw "blocks in reverse order"
reads r.vhdx r.raw "blocks in reverse order"

# ---- 4096-byte logical sectors ---------------------------------------------------
for t in dynamic fixed; do
    sampled || continue
    $MK s4.vhdx --type $t --logical 4096 --size $((9 * MiB)) --data 0:4096 \
        --data $((4 * MiB - 4096)):8192 --data $((9 * MiB - 4096)):4096 --raw s4.raw
    reads s4.vhdx s4.raw "4K sectors, $t"
    qimg info s4.vhdx
    isnt "$QRC" 0 "4K sectors, $t: qemu-img 7.2 cannot open it (kimg can)"
    kimg info --output=json s4.vhdx
    like "$(< "$T/out")" "\"virtual-size\": $((9 * MiB))," "4K sectors, $t: the size"
    like "$(< "$T/out")" '"cluster-size": 1048576,' "4K sectors, $t: the block size"
    kimg check s4.vhdx
    is "$RC" 0 "4K sectors, $t: check is clean"
    if command -v vhdiinfo > /dev/null; then
        out=$(vhdiinfo s4.vhdx 2>&1)
        like "$out" "Media size.*\($((9 * MiB)) bytes\)" "4K sectors, $t: vhdiinfo's size"
        like "$out" "Bytes per sector.*: 4096" "4K sectors, $t: vhdiinfo's sector size"
    else
        skip "4K sectors: vhdiinfo" "libvhdi-utils not installed"
        skip "4K sectors: vhdiinfo" "libvhdi-utils not installed"
    fi
done

# ---- payload block states -------------------------------------------------------
# not present, undefined, zero, unmapped (and 5, the pre-1.0 unmapped) read
# as zeros, as qemu-img reads them, even where data was written before
$MK st.vhdx --size $((8 * MiB)) --data 0:$((8 * MiB)) --state 1=0 --state 2=1 \
    --state 3=2 --state 4=3 --state 5=5 --raw st.raw
qreads st.vhdx st.raw "block states 0, 1, 2, 3, 5"
reads st.vhdx st.raw "block states 0, 1, 2, 3, 5"
# block sizes: 1 MiB .. 256 MiB (generated; qemu-img's are in 710)
for b in 1 4 64 256; do
    sampled || continue
    $MK bs.vhdx --size $((b * MiB + 3 * 4096)) --block-size $((b * MiB)) --data 0:4096 \
        --data $((b * MiB)):4096 --raw bs.raw
    qreads bs.vhdx bs.raw "$b MiB blocks"
    reads bs.vhdx bs.raw "$b MiB blocks"
done

# ---- what a reader may ignore ----------------------------------------------------
$MK u.vhdx --size $MiB --data 0:512 --unknown-meta 0 --raw u.raw
qreads u.vhdx u.raw "unknown metadata item, not required"
reads u.vhdx u.raw "unknown metadata item, not required"
$MK u.vhdx --size $MiB --data 0:512 --unknown-region 0 --raw u.raw
qreads u.vhdx u.raw "unknown region, not required"
reads u.vhdx u.raw "unknown region, not required"
# one damaged header: the other one is current
$MK h1.vhdx --size $MiB --data 0:512 --damage hdr1-crc --raw h1.raw
qreads h1.vhdx h1.raw "first header damaged"
reads h1.vhdx h1.raw "first header damaged"
# the first region table damaged: kimg reads the copy at 256 KiB (the
# specification keeps it for that); qemu-img 7.2 reads the first only
$MK rt.vhdx --size $MiB --data 0:512 --damage rt1-crc --raw rt.raw
reads rt.vhdx rt.raw "first region table damaged"
qimg info rt.vhdx
isnt "$QRC" 0 "first region table damaged: qemu-img 7.2 refuses (deliberate difference)"
done_testing
