#!/bin/bash
# streamOptimized VMDKs: qemu-img's layout (grain directory at the front,
# made by convert -o subformat=streamOptimized) and VMware's (grain
# directory at the end behind a footer, metadata markers, end-of-stream
# marker: tests/images/make-vmdk.py, which qemu-img 7.2 also reads), with
# 64 KiB and 8 KiB grains and a last grain cut short by the capacity.
# qemu-img is the oracle for info, map, compare and check; convert -O raw
# gives qemu-img's bytes and convert -O qcow2 the same content whatever
# the number of workers (deflated grains are decoded on every core).
. "$(dirname "$0")/lib.sh"
MK="$PY $KIMG_SRC/tests/images/make-vmdk.py"
MiB=$((1024 * 1024))

size=$((24 * MiB + 512))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x11 0 4k' -c "write -P 0x22 $((2 * MiB - 1000)) 5000" \
    -c "write -P 0x33 $((7 * MiB + 512)) 3M" -c 'write -P 0 20M 64k' \
    -c "write -P 0x44 $((size - 512)) 512" src.raw > /dev/null
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized src.raw q.vmdk
qemu-img create -q -f vmdk -o subformat=streamOptimized qempty.vmdk 100M
$MK vw.vmdk --type stream --size $size --data 0:100000 --data $((5 * MiB)):$((4 * MiB)) \
    --data $((size - 1000)):1000
$MK vw8k.vmdk --type stream --size $((8 * MiB)) --grain 16 --gtes 128 --data 4096:100000 \
    --data $((3 * MiB)):$((2 * MiB + 300))
$MK vwempty.vmdk --type stream --size $((64 * MiB))

for i in q.vmdk qempty.vmdk vw.vmdk vw8k.vmdk vwempty.vmdk; do
    qemu-img convert -f vmdk -O raw "$i" "$i.raw"
    oracle "$i info" info "$i"
    oracle "$i info json" info --output=json "$i"
    oracle "$i map" map "$i"
    oracle "$i map json" map --output=json "$i"
    oracle "$i compare with its raw" compare -F raw "$i" "$i.raw"
    oracle "$i check" check "$i"
    kimg convert -O raw "$i" out.raw
    ok "$i convert -O raw: qemu-img's bytes" cmp -s out.raw "$i.raw"
    for m in 1 4 16; do
        rm -f out.qcow2
        kimg convert -m $m -O qcow2 "$i" out.qcow2
        ok "$i convert -m $m -O qcow2: the same content" qemu_oracle_compare out.qcow2 "$i.raw"
    done
    kimg convert -c -O qcow2 "$i" outc.qcow2
    ok "$i convert -c -O qcow2: the same content" qemu_oracle_compare outc.qcow2 "$i.raw"
    kimg checksum "$i"; a=$(cut -d' ' -f1 "$T/out")
    kimg checksum -f raw "$i.raw"; b=$(cut -d' ' -f1 "$T/out")
    ok "$i checksum: that of qemu-img's raw conversion" test -n "$a" -a "$a" = "$b"
    if command -v vmdkinfo > /dev/null; then
        media=$(vmdkinfo "$i" 2> /dev/null | sed -n 's/.*Media size.*(\([0-9]*\) bytes).*/\1/p' | head -1)
        kimg info --output=json "$i"
        vs=$(sed -n 's/.*"virtual-size": \([0-9]*\),/\1/p' "$T/out" | head -1)
        is "$vs" "${media:-?}" "$i: vmdkinfo reads the same media size"
    else
        skip "$i: vmdkinfo" "libvmdk-utils not installed"
    fi
done
ok "qemu's stream holds the source's data" qemu_oracle_compare q.vmdk.raw src.raw
done_testing
