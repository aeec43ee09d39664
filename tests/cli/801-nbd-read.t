#!/bin/bash
# NBD exports as sources: checksum (as of the file served), compare (exit
# codes and words as qemu-img), check and measure (as qemu-img), convert
# to local raw and qcow2 (qemu-img compare with the file served, and with
# nbdcopy's copy of the export), with and without block status, through
# several connections (nbdkit's multi-conn filter) and a minimum block size.
# make check: the compare, check and measure cases, and a third of the
# exports in each of the checksum and convert loops (lib.sh sampled), so
# that check reads through each server variant once: checksum through
# the legacy nbd:unix: syntax and without block status, convert through
# multi-conn and the minimum block size (the raw and qcow2 exports are
# read by compare); check-slow the other exports of both loops.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/cli/nbd.sh"
require nbdcopy

qemu-img create -q -f qcow2 q.qcow2 64M
qemu-io -c 'write -P 0x11 0 1M' -c 'write -P 0x22 10M 64k' -c 'write -P 0x33 33M 3M' \
    -c 'write -z 20M 1M' q.qcow2 > /dev/null
qemu-img convert -O raw q.qcow2 r.raw
cp r.raw r-copy.raw; cp q.qcow2 q-copy.qcow2
qnbd raw.sock raw r.raw -x exp
qnbd q.sock raw q.qcow2
kitnbd noext.sock --filter=noextents file r-copy.raw
kitnbd mc.sock --filter=multi-conn file r-copy.raw multi-conn-mode=emulate
kitnbd bs.sock --filter=blocksize file r-copy.raw minblock=4096 maxdata=65536
RAW=$(nuri raw.sock exp); QC=$(nuri q.sock)

want=$("$KIMG" checksum r-copy.raw | cut -d' ' -f1)
# (ordered so that check's third takes the legacy syntax and noextents)
for u in "nbd:unix:$T/raw.sock:exportname=exp" "$RAW" "$QC" "$(nuri noext.sock)" \
         "$(nuri mc.sock)" "$(nuri bs.sock)"; do
    sampled || continue         # check: a third of the exports; check-slow: the rest
    kimg checksum "$u"
    is "$RC $(cut -d' ' -f1 "$T/out")" "0 $want" "checksum $u"
done

oracle "compare raw export with the file" compare "$RAW" r-copy.raw
oracle "compare qcow2 export with the qcow2" compare "$QC" q-copy.qcow2
oracle "compare raw export with the qcow2 export" compare "$RAW" "$QC"
cp r-copy.raw other.raw; qemu-io -f raw -c 'write -P 0x44 40M 512' other.raw > /dev/null
oracle "compare: a difference" compare "$RAW" other.raw
oracle "check the qcow2 export" check "$QC"
oracle "check --output=json the qcow2 export" check --output=json "$QC"
oracle "check the raw export" check "$RAW"
oracle "measure -O qcow2 the raw export" measure -O qcow2 "$RAW"
oracle "measure --output=json -O qcow2 the qcow2 export" measure --output=json -O qcow2 "$QC"

nbdcopy "$RAW" nbdcopy.raw
# (ordered so that check's third takes multi-conn and the block size)
for u in "$(nuri mc.sock)" "$RAW" "$QC" "$(nuri bs.sock)" "$(nuri noext.sock)"; do
    sampled || continue         # check: a third of the exports; check-slow: the rest
    rm -f o.raw o.qcow2
    kimg convert -O raw "$u" o.raw
    is "$RC" 0 "convert -O raw $u"
    ok "  reads as the file served" qemu_oracle_compare o.raw r-copy.raw
    ok "  reads as nbdcopy's copy" cmp -s o.raw nbdcopy.raw
    kimg convert -O qcow2 "$u" o.qcow2
    is "$RC" 0 "convert -O qcow2 $u"
    ok "  reads as the file served" qemu_oracle_compare o.qcow2 r-copy.raw
    qemu-img map --output=json o.qcow2 > k.map; qemu-img convert -O qcow2 "$u" q.out.qcow2
    qemu-img map --output=json q.out.qcow2 > q.map
    ok "  the same allocation as qemu-img's copy (holes stay holes)" cmp -s k.map q.map
done
done_testing
