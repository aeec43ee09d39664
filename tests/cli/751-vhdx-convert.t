#!/bin/bash
# kimg convert -O vhdx as qemu-img 7.2, from a raw source with holes,
# zero runs and data in odd places and from a qcow2 with zero clusters,
# under every subformat/block_state_zero pair and several block sizes:
# qemu-img compare with the source, qemu-img check clean, vhdiinfo reads
# it, kimg reads it back identically, info JSON as qemu-img's output's
# (actual-size aside), the same layout as qemu-img's output (which blocks
# are present, in which order, where), and never more allocated than
# qemu-img's output + 10%.  One difference, on purpose: a fixed disk with
# block_state_zero (qemu's default) keeps each written block at its own
# place in the file; qemu-img appends them past the end, so its file is
# longer than the disk.  Zero ranges of the source are never written:
# blocks that hold only zeros stay ZERO (or NOT_PRESENT).
# make check: a third of the source x options matrix (lib.sh sampled; the
# 8 option sets rotate over the 3 sources, so check still converts each
# source and each option set once, fixed with block_state_zero among
# them) and the crash loop's first points; check-slow the other matrix
# cases and crash points.
. "$(dirname "$0")/lib.sh"
require vhdiinfo
LAYOUT="$PY $KIMG_SRC/tests/images/vhdx-layout.py"
MiB=$((1024 * 1024))

size=$((70 * MiB))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x11 0 4k' -c "write -P 0x22 $((2 * MiB - 1000)) 5000" \
    -c "write -P 0x33 $((17 * MiB + 512)) 300k" -c 'write -P 0 30M 64k' \
    -c "write -P 0x55 $((40 * MiB)) 9M" -c "write -P 0x44 $((size - 512)) 512" src.raw > /dev/null
head -c 3000000 /dev/urandom | dd of=src.raw bs=4096 seek=6000 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 src.raw src.qcow2
qemu-io -f qcow2 -c 'write -z 40M 2M' -c 'write -P 0x66 60M 64k' src.qcow2 > /dev/null
truncate -s $((10 * MiB + 512)) odd.raw
qemu-io -f raw -c "write -P 0x77 $((10 * MiB)) 512" odd.raw > /dev/null

conv() {
    local src=$1 o=$2 name="convert $1 ${2:+-o $2}"
    rm -f k.vhdx q.vhdx
    qemu-img convert -O vhdx ${o:+-o "$o"} "$src" q.vhdx
    kimg convert -O vhdx ${o:+-o "$o"} "$src" k.vhdx
    is "$RC" 0 "$name: exit 0" || diag "$(< "$T/err")"
    is "$(cat "$T/out" "$T/err")" "" "$name: prints nothing"
    qimg compare "$src" k.vhdx
    is "$QRC" 0 "$name: qemu-img compare: identical to the source"
    qimg check k.vhdx
    is "$QRC" 0 "$name: qemu-img check clean"
    ok "$name: vhdiinfo reads it" vhdiinfo k.vhdx
    kimg compare "$src" k.vhdx
    is "$RC" 0 "$name: kimg reads it back identically"
    is "$("$KIMG" info --output=json k.vhdx | sed 's/k\.vhdx/X/; /actual-size/d')" \
       "$(qemu-img info --output=json q.vhdx | sed 's/q\.vhdx/X/; /actual-size/d')" \
       "$name: info JSON as qemu-img's output's"
    local ka qa; ka=$(stat -c %b k.vhdx); qa=$(stat -c %b q.vhdx)
    ok "$name: allocates $ka blocks, qemu-img $qa (at most +10%)" test $((ka * 10)) -le $((qa * 11))
    case ",$o," in
    *,subformat=fixed,*)
        if [[ ",$o," != *,block_state_zero=off,* ]]; then
            ok "$name: the file is no longer than qemu-img's" \
                test "$(stat -c %s k.vhdx)" -le "$(stat -c %s q.vhdx)"
            # present blocks at their own places, zero blocks ZERO
            local bad; bad=$($PY - k.vhdx <<'PY'
import struct, sys
f = open(sys.argv[1], 'rb').read()
bo = 2 << 20
bs = struct.unpack_from('<I', f, (3 << 20) + (64 << 10))[0]
size = struct.unpack_from('<Q', f, (3 << 20) + (64 << 10) + 8)[0]
bad = 0
for b in range((size + bs - 1) // bs):
    e = struct.unpack_from('<Q', f, bo + 8 * b)[0]
    if e & 7 == 6 and (e >> 20) << 20 != (8 << 20) + b * bs: bad += 1
    if e & 7 not in (2, 6): bad += 1
print(bad)
PY
)
            is "$bad" 0 "$name: present blocks at their own places, the others ZERO"
            return
        fi ;;
    esac
    is "$($LAYOUT k.vhdx)" "$($LAYOUT q.vhdx)" "$name: the layout of qemu-img's output"
}
for src in src.raw src.qcow2 odd.raw; do
    for o in "" "subformat=dynamic,block_state_zero=on" "block_state_zero=off" \
             "subformat=fixed" "subformat=fixed,block_state_zero=off" "block_size=1M" \
             "block_size=32M,log_size=2M" "subformat=fixed,block_size=2M"; do
        sampled || continue     # check: a third of the cases; check-slow: the rest
        conv $src "$o"
    done
done
# -S 0 writes the zeros too (as qemu-img: blocks with zeros are present)
rm -f k.vhdx q.vhdx
qemu-img convert -S 0 -O vhdx odd.raw q.vhdx
kimg convert -S 0 -O vhdx odd.raw k.vhdx
is "$($LAYOUT k.vhdx)" "$($LAYOUT q.vhdx)" "convert -S 0: the layout of qemu-img's output"
# from a VHDX (kimg's reader, content status) to a VHDX
kimg convert -O vhdx -o block_size=1M src.raw a.vhdx
kimg convert -O vhdx a.vhdx b.vhdx
qimg compare src.raw b.vhdx
is "$QRC" 0 "vhdx -> vhdx: identical"
# option errors: qemu-img's words, no output file
for o in "subformat=foo" "block_size=3M" "log_size=0" "block_state_zero=maybe"; do
    rm -f r.vhdx
    qimg convert -O vhdx -o "$o" src.raw r.vhdx; rm -f r.vhdx
    kimg convert -O vhdx -o "$o" src.raw r.vhdx
    is "$RC" "$QRC" "convert -o $o: exit code as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "convert -o $o: qemu-img's message"
    ok "convert -o $o: no file left" test ! -e r.vhdx
done
# a crash at every file change of a convert: no file under the final name,
# an existing file of that name keeps its content
echo "keep me" > keep.vhdx
crashes=0 bad_name=0 bad_keep=0
for n in $(crash_points 200); do
    RC=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -O vhdx -o block_size=1M src.raw new.vhdx 2> /dev/null || RC=$?
    RC2=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -O vhdx -o block_size=1M src.raw keep.vhdx 2> /dev/null || RC2=$?
    [ "$RC" = 222 ] || break
    crashes=$((crashes + 1))
    [ -e new.vhdx ] && bad_name=$((bad_name + 1))
    [ "$(< keep.vhdx)" = "keep me" ] || bad_keep=$((bad_keep + 1))
    rm -f new.vhdx .new.vhdx* .keep.vhdx*
done
is "$RC" 0 "crash loop: the convert completes once no crash comes"
like "$crashes" "^([5-9]|[1-9][0-9]+)$" "crash loop: $crashes crash points exercised"
is "$bad_name" 0 "crash loop: no file under the final name after any crash"
is "$bad_keep" 0 "crash loop: an existing file keeps its content after any crash"
qimg compare src.raw new.vhdx
is "$QRC" 0 "crash loop: the completed output is identical to the source"
done_testing
