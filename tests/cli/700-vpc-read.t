#!/bin/bash
# VHD (qemu's "vpc") images made by qemu-img itself: dynamic and fixed,
# CHS-rounded and force_size=on, made by create + qemu-io writes and by
# convert from a raw file with holes.  Through the generic core kimg gives
# qemu-img's info (human, JSON, --backing-chain), map (human, JSON),
# compare, convert (-O raw byte-identical, -O qcow2 the same content),
# checksum (that of qemu-img's raw conversion), measure, and check's exit
# 63.  A fixed VHD is probed by its footer at the end (qemu-img 7.2 probes
# it as raw, so its side gets -f vpc); -f raw still reads the whole file.
# vhdiinfo (libvhdi-utils), when installed, is a second reader.
# make check: a third of the images through every command (lib.sh
# sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
MiB=$((1024 * 1024))

# data with holes, patterns across block boundaries, the last sector
size=$((40 * MiB))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x11 0 4k' -c "write -P 0x22 $((2 * MiB - 1000)) 5000" \
    -c "write -P 0x33 $((17 * MiB + 512)) 300k" -c 'write -P 0 30M 64k' \
    -c "write -P 0x44 $((size - 512)) 512" src.raw > /dev/null
qemu-img convert -f raw -O vpc src.raw conv.vhd
qemu-img convert -f raw -O vpc -o subformat=fixed src.raw conv-fixed.vhd
qemu-img convert -f raw -O vpc -o force_size=on src.raw conv-fs.vhd
qemu-img convert -f raw -O vpc -o subformat=fixed,force_size=on src.raw conv-fixed-fs.vhd
# create, then qemu-io writes (qemu's own allocation order)
qemu-img create -q -f vpc dyn.vhd 20M
qemu-io -f vpc -c "write -P 0x55 $((6 * MiB)) 1M" -c 'write -P 0x66 1000 3000' \
    -c "write -z $((8 * MiB)) 64k" dyn.vhd > /dev/null
qemu-img create -q -f vpc -o subformat=fixed fixed.vhd 20M
qemu-io -f vpc -c 'write -P 0x77 1M 100k' fixed.vhd > /dev/null
qemu-img create -q -f vpc empty.vhd 1G
qemu-img create -q -f vpc -o subformat=fixed,force_size=on zero.vhd 0

# (the order makes check's sample conv.vhd, conv-fs.vhd, fixed.vhd; the
# 1 GiB empty.vhd, the costliest, falls to check-slow)
images="conv.vhd empty.vhd conv-fixed.vhd conv-fs.vhd conv-fixed-fs.vhd dyn.vhd fixed.vhd"
for i in $images; do
    sampled || continue
    # qemu-img's raw conversion: the content every reading is held to
    qemu-img convert -f vpc -O raw "$i" "$i.raw"
    oracle "$i info" info -f vpc "$i"
    oracle "$i info json" info -f vpc --output=json "$i"
    oracle "$i info --backing-chain" info -f vpc --backing-chain "$i"
    oracle "$i info --backing-chain json" info -f vpc --backing-chain --output=json "$i"
    oracle "$i map" map -f vpc "$i"
    oracle "$i map json" map -f vpc --output=json "$i"
    oracle "$i compare with its raw" compare -f vpc -F raw "$i" "$i.raw"
    oracle "$i measure qcow2" measure -f vpc -O qcow2 "$i"
    oracle "$i measure json" measure -f vpc -O qcow2 --output=json "$i"
    oracle "$i check" check -f vpc "$i"
    is "$(< "$T/err")" "kimg: This image format does not support checks" "$i check: qemu-img's message"

    # probed: the same as with -f vpc (fixed ones too: their footer is at the end)
    kimg info --output=json "$i"
    qimg info -f vpc --output=json "$i"
    is_file "$T/out" "$T/qout" "$i: probed as vpc, info as qemu-img -f vpc"
    kimg map --output=json "$i"
    qimg map -f vpc --output=json "$i"
    is_file "$T/out" "$T/qout" "$i: probed, map as qemu-img -f vpc"

    kimg convert -O raw "$i" out.raw
    is "$RC" 0 "$i convert -O raw: exit 0"
    ok "$i convert -O raw: qemu-img's bytes" cmp -s out.raw "$i.raw"
    kimg convert -O qcow2 "$i" out.qcow2
    ok "$i convert -O qcow2: the same content (qemu-img compare)" qemu_oracle_compare out.qcow2 "$i.raw"
    ok "$i convert -O qcow2: a clean image" check_clean out.qcow2
    kimg checksum "$i"; a=$(cut -d' ' -f1 "$T/out")
    kimg checksum -f raw "$i.raw"; b=$(cut -d' ' -f1 "$T/out")
    ok "$i checksum: that of qemu-img's raw conversion" test -n "$a" -a "$a" = "$b"
    kimg compare "$i" src.raw
    qimg compare -f vpc -F raw "$i" src.raw
    is "$RC" "$QRC" "$i compare with the source raw: qemu-img's exit code"

    if command -v vhdiinfo > /dev/null; then
        media=$(vhdiinfo "$i" 2> /dev/null | sed -n 's/.*Media size.*(\([0-9]*\) bytes).*/\1/p')
        kimg info --output=json "$i"
        vs=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtual-size"])' "$T/out")
        is "$vs" "${media:-?}" "$i: vhdiinfo reads the same media size"
    else
        skip "$i: vhdiinfo" "libvhdi-utils not installed"
    fi
done
[ -e conv.vhd.raw ] || qemu-img convert -f vpc -O raw conv.vhd conv.vhd.raw   # (not sampled)
ok "the conversion of the raw source holds its data" qemu_oracle_compare conv.vhd.raw src.raw

# -f raw is an explicit request: a fixed VHD's whole file, footer included
for i in conv-fixed.vhd fixed.vhd; do
    oracle "$i -f raw info" info -f raw --output=json "$i"
    kimg convert -f raw -O raw "$i" whole.raw
    ok "$i -f raw convert: the file's bytes, footer included" cmp -s whole.raw "$i"
done
# qemu-img 7.2 probes a fixed VHD as raw: 512 bytes more, the footer as data
qimg info --output=json conv-fixed.vhd
like "$(< "$T/qout")" '"format": "raw"' "qemu-img 7.2 probes a fixed VHD as raw (kimg does not)"

# a fixed VHD of size 0 is its footer alone, at offset 0 as well as at the
# end: qemu-img makes it but cannot open it (it takes the footer for a
# dynamic disk's copy); kimg reads an empty disk
qimg info -f vpc zero.vhd
isnt "$QRC" 0 "qemu-img 7.2 cannot open its own 0-byte fixed VHD"
kimg info --output=json zero.vhd
is "$RC" 0 "kimg opens it"
like "$(< "$T/out")" '"virtual-size": 0,' "as an empty disk"
kimg convert -O raw zero.vhd z.raw
ok "it converts to an empty raw file" test -f z.raw -a ! -s z.raw

# kimg writes VHDs now (tests 740-742): convert -n into one and create
cp conv.vhd conv-n.vhd
kimg convert -n -O vpc src.raw conv-n.vhd
is "$RC" 0 "convert -n into a vpc target"
ok "convert -n into a vpc target: reads as the source" qemu_oracle_compare -F vpc src.raw conv-n.vhd
oracle "create -f vpc" create -f vpc new.vhd 1M
ok "create -f vpc: qemu-img reads it" qemu-img info -f vpc new.vhd
# check -r: qemu's vpc driver has no repair (exit 63, its message); the
# image is opened read-only for it and left as it was
qemu-img create -q -f vpc rep.vpc 1M
sum=$(md5sum < rep.vpc)
for r in leaks all; do
    kimg check -r $r rep.vpc
    is "$RC:$(< "$T/err")" "63:kimg: This image format does not support checks" "check -r $r: exit 63 as qemu-img"
    qimg check -r $r rep.vpc
    is "$QRC" 63 "check -r $r: qemu-img exits 63 too"
done
is "$(md5sum < rep.vpc)" "$sum" "check -r: the file is unchanged"
done_testing
