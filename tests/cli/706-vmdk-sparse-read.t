#!/bin/bash
# Hosted sparse VMDKs made by qemu-img itself: monolithicSparse (version 1),
# zeroed_grain=on (version 2, zeroed-grain entries from qemu-io write -z),
# twoGbMaxExtentSparse (a descriptor and its sparse extents), made by
# convert from a raw file with holes and by create + qemu-io writes.
# Through the generic core kimg gives qemu-img's info (human, JSON), map
# (human, JSON), compare, measure, check, convert (-O raw byte-identical,
# -O qcow2 the same content) and checksum (that of qemu-img's raw
# conversion).  vmdkinfo (libvmdk-utils), when installed, is a second
# reader of the media size.
# make check: a third of the images through every command (lib.sh
# sampled), and the 1 TiB one; check-slow the rest.
. "$(dirname "$0")/lib.sh"
MiB=$((1024 * 1024))

size=$((40 * MiB + 512))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x11 0 4k' -c "write -P 0x22 $((2 * MiB - 1000)) 5000" \
    -c "write -P 0x33 $((17 * MiB + 512)) 300k" -c 'write -P 0 30M 64k' \
    -c "write -P 0x44 $((size - 512)) 512" src.raw > /dev/null
qemu-img convert -f raw -O vmdk src.raw conv.vmdk
qemu-img convert -f raw -O vmdk -o subformat=twoGbMaxExtentSparse src.raw split.vmdk
qemu-img create -q -f vmdk -o zeroed_grain=on zg.vmdk 20M
qemu-io -f vmdk -c "write -P 0x55 $((6 * MiB)) 1M" -c 'write -P 0x66 1000 3000' \
    -c "write -z $((6 * MiB + 64 * 1024)) 128k" -c "write -z $((12 * MiB)) 64k" zg.vmdk > /dev/null
qemu-img create -q -f vmdk dyn.vmdk 20M
qemu-io -f vmdk -c "write -P 0x77 $((9 * MiB)) 100k" dyn.vmdk > /dev/null
qemu-img create -q -f vmdk empty.vmdk 1G

for i in conv.vmdk split.vmdk zg.vmdk dyn.vmdk empty.vmdk; do
    sampled || continue
    qemu-img convert -f vmdk -O raw "$i" "$i.raw"
    oracle "$i info" info "$i"
    oracle "$i info json" info --output=json "$i"
    oracle "$i map" map "$i"
    oracle "$i map json" map --output=json "$i"
    oracle "$i compare with its raw" compare -F raw "$i" "$i.raw"
    oracle "$i measure json" measure -O qcow2 --output=json "$i"
    oracle "$i check" check "$i"
    kimg convert -O raw "$i" out.raw
    is "$RC" 0 "$i convert -O raw: exit 0"
    ok "$i convert -O raw: qemu-img's bytes" cmp -s out.raw "$i.raw"
    kimg convert -O qcow2 "$i" out.qcow2
    ok "$i convert -O qcow2: the same content" qemu_oracle_compare out.qcow2 "$i.raw"
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
[ -e conv.vmdk.raw ] || qemu-img convert -f vmdk -O raw conv.vmdk conv.vmdk.raw   # (not sampled)
ok "the conversion holds the source's data" qemu_oracle_compare conv.vmdk.raw src.raw

# 1 TiB in 512 extents of 2 GiB, every grain table preallocated: the
# grain-table caches of all extents share one budget, peak RSS < 64 MiB
if [ -x /usr/bin/time ]; then
    mkdir big && (cd big && qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse t.vmdk 1T)
    run /usr/bin/time -f '%M' -o rss.txt "$KIMG" map --output=json big/t.vmdk
    is "$(< "$T/out")" '[{ "start": 0, "length": 1099511627776, "depth": 0, "present": false, "zero": true, "data": false}]' \
        "1 TiB twoGbMaxExtentSparse: map"
    ok "1 TiB twoGbMaxExtentSparse: peak RSS $(< rss.txt) KiB < 64 MiB" test "$(< rss.txt)" -lt 65536
    rm -rf big
else
    skip "1 TiB twoGbMaxExtentSparse" "no /usr/bin/time"
    skip "1 TiB twoGbMaxExtentSparse: RSS" "no /usr/bin/time"
fi
done_testing
