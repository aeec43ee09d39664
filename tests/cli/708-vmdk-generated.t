#!/bin/bash
# Sparse VMDKs qemu-img cannot make, from tests/images/make-vmdk.py
# (written from VMware's "Virtual Disk Format 5.0"): version 3 hosted
# sparse extents, version 2 with zeroed-grain entries where data would be,
# small grains and grain tables (many tables), and vmfsSparse: a
# descriptor naming a "COWD" extent.  qemu-img 7.2 reads them all: it is
# the oracle for info, map, compare and check; convert and checksum give
# the generator's content; vmdkinfo reads the same media size.
. "$(dirname "$0")/lib.sh"
MK="$PY $KIMG_SRC/tests/images/make-vmdk.py"
MiB=$((1024 * 1024))

$MK v3.vmdk --type sparse --version 3 --size $((10 * MiB)) --data 0:100000 \
    --data 5000000:70000 --raw v3.raw
$MK v2.vmdk --type sparse --version 2 --size $((10 * MiB)) --data 0:300000 \
    --zero 65536:131072 --zero 5000000:70000 --raw v2.raw
$MK small.vmdk --type sparse --size $((6 * MiB)) --grain 16 --gtes 64 \
    --data 1000:50000 --data $((3 * MiB)):$((MiB + 12345)) --data $((6 * MiB - 512)):512 --raw small.raw
$MK cowd-s.vmdk --type cowd --size $((40 * MiB)) --data 0:100000 --data 9000000:70000 \
    --data $((40 * MiB - 4096)):4096 --raw cowd.raw --descriptor cowd.vmdk
$MK cowd1-s.vmdk --type cowd --size $((5 * MiB)) --grain 1 --data 0:5000 \
    --data $((3 * MiB)):$((MiB + 1000)) --raw cowd1.raw --descriptor cowd1.vmdk

for i in v3 v2 small cowd cowd1; do
    oracle "$i info" info "$i.vmdk"
    oracle "$i info json" info --output=json "$i.vmdk"
    oracle "$i map" map "$i.vmdk"
    oracle "$i map json" map --output=json "$i.vmdk"
    oracle "$i compare with its raw" compare -F raw "$i.vmdk" "$i.raw"
    oracle "$i check" check "$i.vmdk"
    kimg convert -O raw "$i.vmdk" out.raw
    ok "$i convert -O raw: the generator's content" cmp -s out.raw "$i.raw"
    kimg convert -O qcow2 "$i.vmdk" out.qcow2
    ok "$i convert -O qcow2: the same content" qemu_oracle_compare out.qcow2 "$i.raw"
    kimg checksum "$i.vmdk"; a=$(cut -d' ' -f1 "$T/out")
    kimg checksum -f raw "$i.raw"; b=$(cut -d' ' -f1 "$T/out")
    ok "$i checksum: the raw content's" test -n "$a" -a "$a" = "$b"
    if command -v vmdkinfo > /dev/null; then
        media=$(vmdkinfo "$i.vmdk" 2> /dev/null | sed -n 's/.*Media size.*(\([0-9]*\) bytes).*/\1/p' | head -1)
        kimg info --output=json "$i.vmdk"
        vs=$(sed -n 's/.*"virtual-size": \([0-9]*\),/\1/p' "$T/out" | head -1)
        is "$vs" "${media:-?}" "$i: vmdkinfo reads the same media size"
    else
        skip "$i: vmdkinfo" "libvmdk-utils not installed"
    fi
done
# the zeroed grains are zero clusters in qemu-img map (present, no data)
kimg map --output=json v2.vmdk
like "$(< "$T/out")" '"start": 65536, "length": 131072, "depth": 0, "present": true, "zero": true, "data": false' \
    "v2: zeroed grains map as present zeros"
done_testing
