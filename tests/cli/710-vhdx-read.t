#!/bin/bash
# VHDX images made by qemu-img itself: dynamic and fixed, block sizes from
# 1 MiB to 256 MiB (the last with sector bitmap entries interleaved in the
# BAT), log sizes, made by create + qemu-io writes and by convert from a
# raw file with holes.  Through the generic core kimg gives qemu-img's
# info (human, JSON, --backing-chain), map (JSON; human fails as qemu-img's
# does: the vhdx driver reports no offsets), check (clean, exit 0),
# compare, convert (-O raw byte-identical, -O qcow2 byte-identical too:
# neither tool has block status for vhdx, both find zeros by reading),
# checksum and measure.  vhdiinfo (libvhdi-utils) is a second reader.
# make check: a third of the images through every command (lib.sh
# sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
MiB=$((1024 * 1024))

size=$((40 * MiB))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x11 0 4k' -c "write -P 0x22 $((2 * MiB - 1000)) 5000" \
    -c "write -P 0x33 $((17 * MiB + 512)) 300k" -c 'write -P 0 30M 64k' \
    -c "write -P 0x44 $((size - 512)) 512" src.raw > /dev/null
qemu-img convert -f raw -O vhdx src.raw conv.vhdx
qemu-img convert -f raw -O vhdx -o subformat=fixed src.raw conv-fixed.vhdx
qemu-img convert -f raw -O vhdx -o block_size=1M,log_size=2M src.raw conv-1m.vhdx
qemu-img convert -f raw -O vhdx -o block_size=32M src.raw conv-32m.vhdx
qemu-img convert -f raw -O vhdx -o block_state_zero=off src.raw conv-nozero.vhdx
# create, then qemu-io writes (qemu's own allocation order, through its log)
qemu-img create -q -f vhdx dyn.vhdx 20M
qemu-io -f vhdx -c "write -P 0x55 $((6 * MiB)) 1M" -c 'write -P 0x66 1000 3000' \
    -c "write -z $((8 * MiB)) 64k" -c "write -P 0x67 $((20 * MiB - 4096)) 4096" dyn.vhdx > /dev/null
qemu-img create -q -f vhdx -o subformat=fixed,block_size=2M fixed.vhdx 20M
qemu-io -f vhdx -c 'write -P 0x77 1M 100k' fixed.vhdx > /dev/null
qemu-img create -q -f vhdx -o log_size=4M empty.vhdx 1G
# an odd size: the last block is partial
qemu-img create -q -f vhdx odd.vhdx $((3 * MiB + 512))
qemu-io -f vhdx -c "write -P 0x88 $((3 * MiB)) 512" odd.vhdx > /dev/null

images="conv.vhdx conv-fixed.vhdx conv-1m.vhdx conv-32m.vhdx conv-nozero.vhdx dyn.vhdx fixed.vhdx empty.vhdx odd.vhdx"
for i in $images; do
    sampled || continue
    qemu-img convert -f vhdx -O raw "$i" "$i.raw"
    oracle "$i info" info "$i"
    oracle "$i info json" info --output=json "$i"
    oracle "$i info --backing-chain json" info --backing-chain --output=json "$i"
    oracle "$i map json" map --output=json "$i"
    oracle "$i map" map "$i"
    oracle "$i check" check "$i"
    oracle "$i check json" check --output=json "$i"
    oracle "$i compare with its raw" compare -F raw "$i" "$i.raw"
    oracle "$i compare with the source" compare -F raw "$i" src.raw
    oracle "$i measure qcow2" measure -O qcow2 "$i"
    oracle "$i measure json" measure -O qcow2 --output=json "$i"

    kimg convert -O raw "$i" out.raw
    is "$RC" 0 "$i convert -O raw: exit 0"
    ok "$i convert -O raw: qemu-img's bytes" cmp -s out.raw "$i.raw"
    kimg convert -O qcow2 "$i" out.qcow2
    qemu-img convert -O qcow2 "$i" q.qcow2
    ok "$i convert -O qcow2: qemu-img's file, byte for byte" cmp -s out.qcow2 q.qcow2
    kimg checksum "$i"; a=$(cut -d' ' -f1 "$T/out")
    kimg checksum -f raw "$i.raw"; b=$(cut -d' ' -f1 "$T/out")
    ok "$i checksum: that of qemu-img's raw conversion" test -n "$a" -a "$a" = "$b"

    if command -v vhdiinfo > /dev/null; then
        media=$(vhdiinfo "$i" 2> /dev/null | sed -n 's/.*Media size.*(\([0-9]*\) bytes).*/\1/p')
        kimg info --output=json "$i"
        vs=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtual-size"])' "$T/out")
        is "$vs" "${media:-?}" "$i: vhdiinfo reads the same media size"
    else
        skip "$i: vhdiinfo" "libvhdi-utils not installed"
    fi
done
[ -e conv.vhdx.raw ] || qemu-img convert -f vhdx -O raw conv.vhdx conv.vhdx.raw   # (not sampled)
ok "the conversion of the raw source holds its data" qemu_oracle_compare conv.vhdx.raw src.raw

# 256 MiB blocks over 5 GiB: 16 payload entries per sector bitmap entry,
# so blocks 16 and up sit past an interleaved bitmap entry in the BAT
qemu-img create -q -f vhdx -o block_size=256M il.vhdx 5G
qemu-io -f vhdx -c 'write -P 0x11 0 64k' -c 'write -P 0x22 4096M 64k' \
    -c 'write -P 0x33 4352M 1M' -c 'write -P 0x44 5119M 1M' il.vhdx > /dev/null
oracle "256 MiB blocks info json" info --output=json il.vhdx
oracle "256 MiB blocks check" check il.vhdx
qemu-img convert -O qcow2 il.vhdx il.qcow2
oracle "256 MiB blocks compare with qemu-img's qcow2" compare il.vhdx il.qcow2
kimg checksum il.vhdx; a=$(cut -d' ' -f1 "$T/out")
kimg checksum il.qcow2; b=$(cut -d' ' -f1 "$T/out")
ok "256 MiB blocks: checksum as qemu-img's conversion" test -n "$a" -a "$a" = "$b"
rm -f il.vhdx il.qcow2

# probed as vhdx (the format name qemu-img uses); -f raw still reads the file
kimg info --output=json conv.vhdx
like "$(< "$T/out")" '"format": "vhdx"' "probed as vhdx"
oracle "-f raw info" info -f raw --output=json conv.vhdx

# kimg writes VHDX too (since issue 13; tests 750-753): convert -n into
# qemu-img's image and create work, and qemu-img reads the results
kimg convert -n -O vhdx src.raw conv.vhdx
is "$RC" 0 "convert -n into a vhdx target: exit 0"
qimg compare src.raw conv.vhdx
is "$QRC" 0 "convert -n into a vhdx target: qemu-img reads the source's content"
kimg create -f vhdx new.vhdx 1M
is "$RC" 0 "create -f vhdx: exit 0"
qimg check new.vhdx
is "$QRC" 0 "create -f vhdx: qemu-img check clean"
# check -r on a clean image: nothing to repair, so qemu-img's report and
# exit 0 (kimg opens it read-only: the file stays as it was)
cp conv.vhdx c2.vhdx
sum=$(md5sum < c2.vhdx)
kimg check -r all c2.vhdx
is "$RC" 0 "check -r all (clean): exit 0"
is "$(md5sum < c2.vhdx)" "$sum" "check -r: the file is unchanged"
oracle "check -r all (clean)" check -r all conv.vhdx
oracle "check -r leaks --output=json (clean)" check -r leaks --output=json conv.vhdx
done_testing
