#!/bin/bash
# Writes into existing VHDX images (convert -n), crash-safe without the
# log (formats/vhdx/write.c): kimg's and qemu-img's images, dynamic and
# fixed, with and without data, 512- and 4096-byte sectors, blocks stored
# out of order; after the write the image reads as the source (qemu-img
# compare), qemu-img check is clean, vhdiinfo reads it, and both headers
# are valid with new sequence numbers (the header-sequence switch).  An
# image whose log holds entries to replay is refused for writing, in one
# line, untouched.  Zero ranges of the source into blocks that hold none
# allocate nothing.
# make check: a third of the images written into (lib.sh sampled; each
# made only when it is written); check-slow the rest.
. "$(dirname "$0")/lib.sh"
require vhdiinfo
MK="$PY $KIMG_SRC/tests/images/make-vhdx.py"
MiB=$((1024 * 1024))

size=$((20 * MiB))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x11 0 4k' -c "write -P 0x22 $((2 * MiB - 1000)) 5000" \
    -c "write -P 0x33 $((9 * MiB + 512)) 300k" -c "write -P 0x44 $((size - 512)) 512" \
    src.raw > /dev/null

seqs() { $PY -c 'import struct,sys; f=open(sys.argv[1],"rb").read(); print(*[struct.unpack_from("<Q",f,o+8)[0] for o in (65536,131072)])' "$1"; }

# into NAME IMAGE [kimg]: convert -n src.raw into a copy of IMAGE (with
# "kimg": read back by kimg alone; qemu 7.2 reads no 4096-byte sectors)
into() {
    local name=$1 reader=${3:-qemu}
    cp "$2" w.vhdx
    local before; before=$(seqs w.vhdx)
    kimg convert -n -O vhdx src.raw w.vhdx
    is "$RC" 0 "$name: convert -n exit 0" || diag "$(< "$T/err")"
    if [ "$reader" = kimg ]; then
        kimg compare src.raw w.vhdx
        is "$RC" 0 "$name: reads as the source (kimg compare)"
        kimg check w.vhdx
        is "$RC" 0 "$name: kimg check clean"
    else
        qimg compare src.raw w.vhdx
        is "$QRC" 0 "$name: reads as the source (qemu-img compare)"
        qimg check w.vhdx
        is "$QRC" 0 "$name: qemu-img check clean"
    fi
    ok "$name: vhdiinfo reads it" vhdiinfo w.vhdx
    local a b c d; read -r a b <<< "$before"; read -r c d <<< "$(seqs w.vhdx)"
    local hi=$((a > b ? a : b))
    ok "$name: both headers rewritten with higher sequence numbers ($a $b -> $c $d)" \
        test $((c > hi && d > hi && c != d)) = 1
    # written again: nothing new is allocated
    local sz; sz=$(stat -c %s w.vhdx)
    kimg convert -n -O vhdx src.raw w.vhdx
    is "$(stat -c %s w.vhdx)" "$sz" "$name: a second write allocates nothing"
    "$KIMG" compare -q src.raw w.vhdx
    is "$?" 0 "$name: and still reads as the source"
}
# (k-dyn.vhdx is made in both parts: the last test copies it)
"$KIMG" create -q -f vhdx k-dyn.vhdx $size
if sampled; then
    qemu-img create -q -f vhdx q-dyn.vhdx $size
    into "qemu-img's dynamic" q-dyn.vhdx
fi
if sampled; then
    qemu-img create -q -f vhdx -o block_state_zero=off,block_size=1M q-np.vhdx $size
    into "qemu-img's dynamic, NOT_PRESENT blocks" q-np.vhdx
fi
if sampled; then
    qemu-img create -q -f vhdx -o subformat=fixed q-fix.vhdx $size
    into "qemu-img's fixed" q-fix.vhdx
fi
if sampled; then
    qemu-img create -q -f vhdx -o subformat=fixed,block_state_zero=off,block_size=2M q-fix2.vhdx $size
    into "qemu-img's fixed, blocks present" q-fix2.vhdx
fi
if sampled; then
    qemu-img create -q -f vhdx -o block_size=1M q-data.vhdx $size
    qemu-io -f vhdx -c 'write -P 0x99 0 3M' -c 'write -P 0x98 15M 2M' q-data.vhdx > /dev/null
    into "qemu-img's dynamic with data" q-data.vhdx
fi
if sampled; then
    qemu-img convert -O vhdx -o subformat=fixed src.raw q-fixdata.vhdx
    qemu-io -f vhdx -c 'write -P 0x97 5M 2M' q-fixdata.vhdx > /dev/null
    into "qemu-img's fixed with appended blocks" q-fixdata.vhdx
fi
if sampled; then
    "$KIMG" create -q -f vhdx -o subformat=fixed k-fix.vhdx $size
    into "kimg's fixed" k-fix.vhdx
fi
if sampled; then
    into "kimg's dynamic" k-dyn.vhdx
fi
if sampled; then
    $MK g.vhdx --size $size --data 0:$((3 * MiB)) --data $((12 * MiB)):100000 --reverse
    into "generated, blocks in reverse order" g.vhdx
fi
if sampled; then
    $MK g4.vhdx --size $size --logical 4096 --data $((MiB)):$((2 * MiB))
    into "generated, 4096-byte sectors" g4.vhdx kimg
fi
if sampled; then
    $MK gf.vhdx --size $size --type fixed --block-size $((4 * MiB))
    into "generated fixed" gf.vhdx
fi

# zero writes into present blocks read as zeros; into absent ones they
# allocate nothing
"$KIMG" create -q -f vhdx -o block_size=1M z.vhdx $size
qemu-io -f vhdx -c 'write -P 0x5a 0 2M' z.vhdx > /dev/null
truncate -s $size zero.raw
sz=$(stat -c %s z.vhdx)
kimg convert -n -O vhdx zero.raw z.vhdx
is "$RC" 0 "zeros into present blocks: exit 0"
qimg compare zero.raw z.vhdx
is "$QRC" 0 "zeros into present blocks: reads as zeros"
is "$(stat -c %s z.vhdx)" "$sz" "zeros: nothing allocated"

# commit of a qcow2 overlay into a VHDX base (the library's writes, not
# convert's)
"$KIMG" convert -O vhdx -o block_size=1M src.raw base.vhdx
qemu-img create -q -f qcow2 -b base.vhdx -F vhdx ov.qcow2
qemu-io -f qcow2 -c 'write -P 0xab 3M 2M' -c 'write -z 9M 64k' -c "write -P 0xcd $((size - MiB)) 1M" \
    ov.qcow2 > /dev/null
qemu-img convert -O raw ov.qcow2 want.raw
kimg commit ov.qcow2
is "$RC" 0 "commit into a VHDX base: exit 0"
qimg compare want.raw base.vhdx
is "$QRC" 0 "commit into a VHDX base: the base reads as the overlay did"
qimg check base.vhdx
is "$QRC" 0 "commit into a VHDX base: qemu-img check clean"

# a log with entries to replay: refused for writing, the file untouched
$MK dl.vhdx --dirty-log --size $((6 * MiB)) --data 0:100000 --data 3000000:200000
sum=$(md5sum < dl.vhdx)
kimg convert -n -O vhdx src.raw dl.vhdx
err_line "dirty log: convert -n refused"
like "$(< "$T/err")" "log holds entries" "dirty log: says why"
is "$(md5sum < dl.vhdx)" "$sum" "dirty log: the file is untouched"
# a read-only command on a clean image never writes it
cp k-dyn.vhdx ro.vhdx; sum=$(md5sum < ro.vhdx)
kimg check -r all ro.vhdx
is "$(md5sum < ro.vhdx)" "$sum" "check -r on a clean image: the file is untouched"
done_testing
