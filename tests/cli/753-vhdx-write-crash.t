#!/bin/bash
# Crash safety of writes into an existing VHDX (convert -n -t writeback,
# so the writes are flushed as write.c orders them): the process dies
# before its 1st, 2nd, ... file change (KIMG_CRASH_AFTER) until the
# convert completes; after every crash qemu-img check is clean (no BAT
# entry past the end of the file), both headers are valid (qemu-img opens
# it) and every 4 KiB of the disk reads as before or as the source.  Then
# the same under power failures (KIMG_CRASH_LOSE: changes not yet synced
# may each be lost): a BAT entry that reached the disk before its data
# would read as neither.  Images: qemu-img's dynamic (appended blocks) and
# kimg's fixed (blocks at their own places).
# make check: three of the nine image x crash-model loops (lib.sh
# sampled; the images rotate over the models, so check crashes into each
# image once: dynamic without power failures, the fixed disk with old
# bytes in place under seed 1, fixed under seed 2), at check's crash
# points (crash_next); check-slow the other crash points of those three
# and every point of the other six.
# crash-model: power-failure
. "$(dirname "$0")/lib.sh"
MiB=$((1024 * 1024))
size=$((6 * MiB))
truncate -s $size src.raw
qemu-io -f raw -c 'write -P 0x61 0 1M' -c 'write -P 0x62 2M 64k' -c 'write -P 0x63 3M 1536k' \
    -c "write -P 0x64 $((size - 4096)) 4096" src.raw > /dev/null
head -c 300000 /dev/urandom | dd of=src.raw bs=4096 seek=300 conv=notrunc status=none

# crash_loop NAME IMAGE SEED PART: crash convert -n into copies of IMAGE
# at PART's crash points (crash_next: quick, rest or all)
crash_loop() {
    local name=$1 img=$2 seed=$3 part=$4 n=0 rc crashes=0 bad_check=0 bad_data=0
    qemu-img convert -O raw "$img" old.raw
    while :; do
        cp "$img" w.vhdx
        rc=0; env ${seed:+KIMG_CRASH_LOSE=$seed} KIMG_CRASH_AFTER=$n timeout 60 "$KIMG" convert \
            -n -t writeback -O vhdx src.raw w.vhdx 2> /dev/null || rc=$?
        if ! qemu-img check -q w.vhdx > /dev/null 2>&1; then
            bad_check=$((bad_check + 1)); diag "$name: crash after $n changes: check fails"
        fi
        if ! qemu-img convert -O raw w.vhdx w.raw 2> /dev/null ||
           [ "$(stat -c %s w.raw)" != "$(stat -c %s src.raw)" ] ||
           ! $PY "$KIMG_SRC/tests/cli/crash-oldnew.py" old.raw src.raw w.raw > /dev/null; then
            bad_data=$((bad_data + 1)); diag "$name: crash after $n changes: neither old nor new"
        fi
        [ "$rc" = 222 ] || break
        crashes=$((crashes + 1)); n=$(KIMG_TEST_PART=$part crash_next $n)
        [ $n -le 300 ] || break
    done
    is "$rc" 0 "$name: completes once no crash comes"
    like "$crashes" "^([5-9]|[1-9][0-9]+)$" "$name: $crashes crash points exercised"
    is "$bad_check" 0 "$name: qemu-img check clean after every crash"
    is "$bad_data" 0 "$name: every 4 KiB reads as before or as the source after every crash"
    qimg compare src.raw w.vhdx
    is "$QRC" 0 "$name: the completed write reads as the source"
}
qemu-img create -q -f vhdx -o block_size=1M dyn.vhdx $size
qemu-io -f vhdx -c 'write -P 0x99 1M 1M' -c 'write -P 0x98 5M 512k' dyn.vhdx > /dev/null
"$KIMG" create -q -f vhdx -o subformat=fixed,block_size=1M fix.vhdx $size
# a fixed disk whose ZERO blocks' places hold old bytes (written while
# present, then set ZERO): a block linked before its place is cleared
# and written would show them
"$KIMG" create -q -f vhdx -o subformat=fixed,block_state_zero=off,block_size=1M stale.vhdx $size
qemu-io -f vhdx -c "write -P 0xee 0 $size" stale.vhdx > /dev/null
$PY - stale.vhdx <<'PY'
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(2 << 20)
    f.write(struct.pack('<6Q', *([2] * 6)))
PY
# each (seed, image) loop is a sampled case: check runs the 1st, 4th and
# 7th at its crash points, check-slow their other points and every point
# of the loops check skips (the image order rotates with the seed so that
# check's three take each image)
for seed in "" 1 2; do
    case $seed in
    "") imgs="dyn fix stale" ;;
    1) imgs="stale dyn fix" ;;
    2) imgs="fix stale dyn" ;;
    esac
    for img in $imgs; do
        if sampled; then part=$KIMG_TEST_PART; [ "$part" = rest ] && part=all
        elif [ "$KIMG_TEST_PART" = rest ]; then part=rest
        else continue
        fi
        case $img in
        dyn) name=dynamic ;;
        fix) name=fixed ;;
        stale) name="fixed, old bytes in place" ;;
        esac
        crash_loop "$name${seed:+, power failure seed $seed}" $img.vhdx "$seed" $part
    done
done
done_testing
