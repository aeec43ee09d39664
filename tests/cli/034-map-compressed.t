#!/bin/bash
# map of images with compressed clusters, byte for byte as qemu-img 7.2:
# compressed clusters are data without an offset (JSON: no "offset"; they
# merge with their neighbours when the flags match), the human format
# stops at the first one with qemu-img's error; mixed with plain data,
# zero clusters, discards, extended L2, backing layers (depth), and the
# -s/-l short forms of --start-offset/--max-length (with qemu-img's
# messages for bad values).
# make check: half the cluster sizes (lib.sh sampled 2; 64k and 4k, and
# 64k with extended L2: qemu-img alone spends some 2 s of CPU making the
# 512-byte one), kimg's own output, the offsets and the bad values;
# check-slow the other cluster sizes.
. "$(dirname "$0")/lib.sh"

qemu-img create -q -f raw src.raw 8M
qemu-io -f raw -c 'write -P 0x41 0 192k' -c 'write -P 0 256k 64k' -c 'write -P 0x42 320k 1M' \
        -c 'write -P 0x43 2M 100k' -c 'write -P 0x44 3M 1M' -c 'write -P 0x45 7M 512' src.raw > /dev/null
head -c 262144 /dev/urandom | dd of=src.raw bs=64k seek=80 conv=notrunc status=none  # incompressible

maps() {
    local name=$1; shift
    oracle "$name: json" map --output=json "$@"
    oracle "$name: human" map "$@"
}

for cs in 65536 512 4096 2M; do
    sampled 2 || continue       # check: 64k and 4k; check-slow: 512 and 2M
    qemu-img convert -c -f raw -O qcow2 -o cluster_size=$cs src.raw c$cs.qcow2
    maps "compressed, $cs-byte clusters" c$cs.qcow2
    cp c$cs.qcow2 m$cs.qcow2
    qemu-io -c 'write -P 0x11 100k 300k' -c 'write -z 1M 200k' -c 'write -z -u 2M 128k' \
            -c 'discard 3M 256k' -c 'write -P 0 4M 64k' m$cs.qcow2 > /dev/null
    maps "compressed and plain, $cs" m$cs.qcow2
    maps "compressed and plain, $cs, -s/-l" -s 100k -l 3M m$cs.qcow2
    qemu-img create -q -f qcow2 -o cluster_size=$cs -b m$cs.qcow2 -F qcow2 top$cs.qcow2
    qemu-io -c 'write -P 0x22 5M 100k' -c 'write -c -P 0x33 6M 64k' -c 'write -z 7M 64k' \
            top$cs.qcow2 > /dev/null
    maps "backing layers, $cs" top$cs.qcow2
done
for cs in 65536 2M; do
    sampled 2 || continue       # check: 64k; check-slow: 2M
    qemu-img convert -c -f raw -O qcow2 -o cluster_size=$cs,extended_l2=on src.raw e$cs.qcow2
    qemu-io -c 'write -P 0x11 100k 3k' -c 'write -z 1M 20k' e$cs.qcow2 > /dev/null
    maps "extended L2, $cs" e$cs.qcow2
done
# kimg's own compressed output reads the same in both tools
kimg convert -c -f raw -O qcow2 src.raw k.qcow2
maps "kimg -c output" k.qcow2
qemu-img create -q -f qcow2 -b k.qcow2 -F qcow2 ktop.qcow2
maps "over kimg -c output" ktop.qcow2
maps "--start-offset inside a compressed cluster" --start-offset=70000 --max-length=200000 k.qcow2
maps "-s past the end" -s 9M k.qcow2
maps "-l 0" -l 0 k.qcow2

for a in "-s x" "-l x" "-s 9E" "-s 99999999999999999999" "-l -1"; do
    qimg map $a k.qcow2; kimg map $a k.qcow2
    is "$RC" "$QRC" "map $a: exit code as qemu-img's"
    is "$(< "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr" | tr '\n' ' ' | sed 's/ $//;s/^/kimg: /')" \
       "map $a: qemu-img's message on one line"
done
done_testing
