#!/bin/bash
# VMDK images made by qemu-img itself, every subformat it creates
# (monolithicSparse with and without zeroed grains, streamOptimized,
# monolithicFlat, twoGbMaxExtentSparse, twoGbMaxExtentFlat, compat6),
# by create + qemu-io writes and by convert -O vmdk, and delta disks (-b
# -F, two levels).  Through the generic core kimg gives qemu-img's info
# (human, JSON, --backing-chain), map (human, JSON), check (human, JSON),
# compare, measure; convert -O raw/qcow2 and checksum hold qemu-img's
# content.  vmdkinfo (libvmdk-utils), when installed, is a second reader.
# make check: a third of the images through every command (lib.sh
# sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
MiB=$((1024 * 1024))

size=$((40 * MiB))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x11 0 4k' -c "write -P 0x22 $((2 * MiB - 1000)) 5000" \
    -c "write -P 0x33 $((17 * MiB + 512)) 300k" -c 'write -P 0 30M 64k' \
    -c "write -P 0x44 $((size - 512)) 512" src.raw > /dev/null
for sub in monolithicSparse streamOptimized monolithicFlat twoGbMaxExtentSparse \
           twoGbMaxExtentFlat; do
    qemu-img convert -f raw -O vmdk -o subformat=$sub src.raw conv-$sub.vmdk
done
qemu-img convert -f raw -O vmdk -o compat6=on src.raw conv-compat6.vmdk
qemu-img create -q -f vmdk -o zeroed_grain=on zg.vmdk 20M
qemu-io -f vmdk -c "write -P 0x55 $((6 * MiB)) 1M" -c 'write -P 0x66 1000 3000' \
    -c "write -z $((8 * MiB)) 1M" zg.vmdk > /dev/null
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse ts.vmdk 5G
qemu-io -f vmdk -c "write -P 0x77 $((2047 * MiB)) 2M" ts.vmdk > /dev/null
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentFlat tf.vmdk 5G
qemu-io -f vmdk -c "write -P 0x78 $((4095 * MiB)) 2M" tf.vmdk > /dev/null
# delta disks: base <- d1 <- d2
qemu-img create -q -f vmdk base.vmdk 20M
qemu-io -f vmdk -c 'write -P 0x01 0 4M' base.vmdk > /dev/null
qemu-img create -q -f vmdk -b base.vmdk -F vmdk d1.vmdk
qemu-io -f vmdk -c 'write -P 0x02 1M 64k' d1.vmdk > /dev/null
qemu-img create -q -f vmdk -b d1.vmdk -F vmdk d2.vmdk
qemu-io -f vmdk -c 'write -P 0x03 3M 1M' d2.vmdk > /dev/null
# a twoGbMaxExtentSparse delta over a twoGbMaxExtentSparse base (two
# extents each; the parent hint in the descriptor file)
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse tsb.vmdk 2049M
qemu-io -f vmdk -c "write -P 0x09 $((2047 * MiB)) 2M" tsb.vmdk > /dev/null
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse -b tsb.vmdk -F vmdk tsd.vmdk
qemu-io -f vmdk -c "write -P 0x0a $((2048 * MiB)) 64k" tsd.vmdk > /dev/null

images="tsd.vmdk conv-monolithicSparse.vmdk conv-streamOptimized.vmdk conv-monolithicFlat.vmdk
        conv-twoGbMaxExtentSparse.vmdk conv-twoGbMaxExtentFlat.vmdk conv-compat6.vmdk
        zg.vmdk ts.vmdk tf.vmdk base.vmdk d1.vmdk d2.vmdk"
for i in $images; do
    sampled || continue
    qemu-img convert -O raw "$i" "$i.raw"
    oracle "$i info" info "$i"
    oracle "$i info json" info --output=json "$i"
    oracle "$i info --backing-chain" info --backing-chain "$i"
    oracle "$i info --backing-chain json" info --backing-chain --output=json "$i"
    oracle "$i map json" map --output=json "$i"
    case $i in
    *streamOptimized*) ;;    # qemu-img map's human form refuses compressed data
    *) oracle "$i map" map "$i" ;;
    esac
    oracle "$i check" check "$i"
    oracle "$i check json" check --output=json "$i"
    oracle "$i compare with its raw" compare "$i" "$i.raw"
    oracle "$i measure qcow2" measure -O qcow2 --output=json "$i"

    kimg convert -O raw "$i" out.raw
    is "$RC" 0 "$i convert -O raw: exit 0"
    ok "$i convert -O raw: qemu-img's bytes" same_bytes out.raw "$i.raw"
    kimg convert -O qcow2 "$i" out.qcow2
    ok "$i convert -O qcow2: the same content (qemu-img compare)" qemu_oracle_compare out.qcow2 "$i.raw"
    ok "$i convert -O qcow2: a clean image" check_clean out.qcow2
    kimg checksum "$i"; a=$(cut -d' ' -f1 "$T/out")
    kimg checksum -f raw "$i.raw"; b=$(cut -d' ' -f1 "$T/out")
    ok "$i checksum: that of qemu-img's raw conversion" test -n "$a" -a "$a" = "$b"

    if command -v vmdkinfo > /dev/null && [ "${i#d}" = "$i" ] && [ "$i" != tsd.vmdk ]; then
        vi=$(vmdkinfo "$i" 2> /dev/null)
        media=$(sed -n 's/.*Media size.*(\([0-9]*\) bytes).*/\1/p' <<< "$vi")
        cid=$(sed -n 's/.*Content identifier:[[:space:]]*0x\([0-9a-f]*\).*/\1/p' <<< "$vi" | head -1)
        kimg info --output=json "$i"
        read -r vs kcid < <($PY -c 'import json,sys; j=json.load(open(sys.argv[1]))
print(j["virtual-size"], j["format-specific"]["data"]["cid"])' "$T/out")
        is "$vs" "${media:-?}" "$i: vmdkinfo reads the same media size"
        is "$kcid" "$((16#${cid:-0}))" "$i: vmdkinfo reads the same CID"
    else
        skip "$i: vmdkinfo size" "libvmdk-utils not installed, or a delta disk"
        skip "$i: vmdkinfo CID" "libvmdk-utils not installed, or a delta disk"
    fi
done
[ -e conv-monolithicSparse.vmdk.raw ] ||   # (not sampled)
    qemu-img convert -O raw conv-monolithicSparse.vmdk conv-monolithicSparse.vmdk.raw
ok "the conversions of the raw source hold its data" qemu_oracle_compare conv-monolithicSparse.vmdk.raw src.raw

# an existing flat VMDK qemu-img made is written in place (735, 736)
kimg convert -n -O vmdk src.raw conv-monolithicFlat.vmdk
is "$RC" 0 "convert -n into qemu-img's monolithicFlat VMDK" || diag "$(< "$T/err")"
ok "... it holds the source's data" qemu_oracle_compare -F vmdk src.raw conv-monolithicFlat.vmdk
# check -r: qemu's vmdk driver has no repair (exit 63, its message); the
# image is opened read-only for it and left as it was
qemu-img create -q -f vmdk rep.vmdk 1M
sum=$(md5sum < rep.vmdk)
for r in leaks all; do
    kimg check -r $r rep.vmdk
    is "$RC:$(< "$T/err")" "63:kimg: This image format does not support checks" "check -r $r: exit 63 as qemu-img"
    qimg check -r $r rep.vmdk
    is "$QRC" 63 "check -r $r: qemu-img exits 63 too"
done
is "$(md5sum < rep.vmdk)" "$sum" "check -r: the file is unchanged"
done_testing
