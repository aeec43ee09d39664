#!/bin/bash
# VDI images made by qemu-img itself: dynamic and static (static=on),
# made by create + qemu-io writes and by convert from a raw file with
# holes.  Through the generic core kimg gives qemu-img's info (human, JSON,
# --backing-chain), map (human, JSON), check (and check -r's exit 63),
# compare, convert (-O raw byte-identical, -O qcow2 the same content),
# checksum (that of qemu-img's raw conversion) and measure.
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
qemu-img convert -f raw -O vdi src.raw conv.vdi
qemu-img convert -f raw -O vdi -o static=on src.raw conv-static.vdi
# create, then qemu-io writes (qemu's own allocation order), a size that
# is not a multiple of the block size
qemu-img create -q -f vdi dyn.vdi $((20 * MiB + 512))
qemu-io -f vdi -c "write -P 0x55 $((6 * MiB)) 1M" -c 'write -P 0x66 1000 3000' \
    -c "write -z $((8 * MiB)) 64k" -c "write -P 0x77 $((20 * MiB)) 512" dyn.vdi > /dev/null
qemu-img create -q -f vdi -o static=on static.vdi 20M
qemu-io -f vdi -c 'write -P 0x77 1M 100k' -c "write -P 0x78 $((19 * MiB)) 4k" static.vdi > /dev/null
qemu-img create -q -f vdi empty.vdi 1G
qemu-img create -q -f vdi zero.vdi 0

images="conv.vdi conv-static.vdi dyn.vdi static.vdi empty.vdi zero.vdi"
for i in $images; do
    sampled || continue
    # qemu-img's raw conversion: the content every reading is held to
    qemu-img convert -f vdi -O raw "$i" "$i.raw"
    oracle "$i info" info -f vdi "$i"
    oracle "$i info json" info -f vdi --output=json "$i"
    oracle "$i info --backing-chain" info -f vdi --backing-chain "$i"
    oracle "$i info --backing-chain json" info -f vdi --backing-chain --output=json "$i"
    oracle "$i map" map -f vdi "$i"
    oracle "$i map json" map -f vdi --output=json "$i"
    oracle "$i compare with its raw" compare -f vdi -F raw "$i" "$i.raw"
    oracle "$i measure qcow2" measure -f vdi -O qcow2 "$i"
    oracle "$i measure json" measure -f vdi -O qcow2 --output=json "$i"
    oracle "$i check" check -f vdi "$i"
    oracle "$i check json" check -f vdi --output=json "$i"
    oracle "$i check -r all" check -f vdi -r all "$i"
    is "$(< "$T/err")" "kimg: This image format does not support checks" \
        "$i check -r all: qemu-img's message"
    oracle "$i check -r leaks" check -f vdi -r leaks "$i"

    # probed: the same as with -f vdi
    oracle "$i probed info json" info --output=json "$i"
    oracle "$i probed map json" map --output=json "$i"

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
    qimg compare -f vdi -F raw "$i" src.raw
    is "$RC" "$QRC" "$i compare with the source raw: qemu-img's exit code"
done
[ -e conv.vdi.raw ] || qemu-img convert -f vdi -O raw conv.vdi conv.vdi.raw   # (not sampled)
ok "the conversion of the raw source holds its data" qemu_oracle_compare conv.vdi.raw src.raw
# two VDIs against each other, and a VDI as the second image
oracle "compare dynamic with static" compare conv.vdi conv-static.vdi
# (zero.vdi's qcow2 conversion, made here: the loop above is sampled)
qemu-img convert -f vdi -O qcow2 zero.vdi zero.qcow2
oracle "compare qcow2 with a VDI" compare -f qcow2 -F vdi zero.qcow2 zero.vdi
# -p's progress as qemu-img's (block status, one block per reply)
oracle "convert -p" convert -p -O raw conv.vdi p.raw

# -f raw is an explicit request: the whole file, header and block map included
oracle "-f raw info" info -f raw --output=json conv.vdi
kimg convert -f raw -O raw conv.vdi whole.raw
ok "-f raw convert: the file's bytes" cmp -s whole.raw conv.vdi

# qemu-img cannot measure for a vdi target: its message, its exit code
oracle "measure -O vdi" measure -O vdi --size 1M
is "$(< "$T/err")" "$(sed 's/^qemu-img: /kimg: /' "$T/qerr")" "measure -O vdi: qemu-img's message"

# kimg writes VDIs now (tests 745, 746): convert -n into one and create
cp conv.vdi conv-n.vdi
kimg convert -n -O vdi src.raw conv-n.vdi
is "$RC" 0 "convert -n into a vdi target"
ok "convert -n into a vdi target: reads as the source" qemu_oracle_compare -F vdi src.raw conv-n.vdi
ok "convert -n into a vdi target: qemu-img check clean" check_clean conv-n.vdi
oracle "create -f vdi" create -f vdi new.vdi 1M
ok "create -f vdi: qemu-img check clean" check_clean new.vdi
done_testing
