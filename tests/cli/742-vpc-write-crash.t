#!/bin/bash
# Crashes (KIMG_CRASH_AFTER=N) at every point of convert -n -t writeback
# into an existing dynamic VHD (blocks of old data in place, new blocks to
# allocate, zeros over old data): after every crash the image opens in
# qemu-img and vhdiinfo, and every 4 KiB of it reads as its old or its new
# content (a block's data, bitmap and the footer after it are synced
# before the BAT entry that points at it).  The run without a crash gives
# the source's content; a second -n after a crash in the middle too.
. "$(dirname "$0")/lib.sh"
command -v vhdiinfo > /dev/null || skip_all "vhdiinfo not installed"
MiB=$((1024 * 1024))
size=$((16 * MiB))
qemu-img create -q -f vpc base.vhd $size
qemu-io -f vpc -c 'write -P 0x11 0 1M' -c 'write -P 0x12 4M 2M' -c 'write -P 0x13 10M 64k' \
    base.vhd > /dev/null
vsize=$(qemu-img info -f vpc --output=json base.vhd | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
qemu-img convert -f vpc -O raw base.vhd old.raw
truncate -s "$vsize" new.raw
qemu-io -f raw -c 'write -P 0x21 512k 1M' -c 'write -P 0x22 2M 100k' -c 'write -P 0x23 8M 3M' \
    -c 'write -P 0x24 15M 4k' new.raw > /dev/null
head -c 300000 /dev/urandom | dd of=new.raw bs=4096 seek=1500 conv=notrunc status=none
# 4-6 MiB (old data) becomes zeros in new.raw: a zero write, no block

crashes=0 bad_open=0 bad_vhdi=0 bad_data=0 final=
for n in $(crash_points 400); do
    cp base.vhd t.vhd
    R=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -n -t writeback -f raw -O vpc new.raw t.vhd 2> err || R=$?
    if [ "$R" != 222 ]; then final=$R; break; fi
    crashes=$((crashes + 1))
    if ! qemu-img convert -f vpc -O raw t.vhd got.raw 2> /dev/null; then
        bad_open=$((bad_open + 1)); continue
    fi
    vhdiinfo t.vhd > /dev/null 2>&1 || bad_vhdi=$((bad_vhdi + 1))
    $PY "$KIMG_SRC/tests/cli/crash-oldnew.py" old.raw new.raw got.raw > why || {
        bad_data=$((bad_data + 1)); diag "crash $n: $(< why)"; }
    # kimg finishes the job on the crashed image
    if [ $((n % 7)) = 3 ]; then
        "$KIMG" convert -n -t writeback -f raw -O vpc new.raw t.vhd 2> /dev/null &&
            qemu_oracle_compare -f raw -F vpc new.raw t.vhd || { bad_data=$((bad_data + 1)); diag "crash $n: a second -n did not finish the job"; }
    fi
done
ok "the convert has $n change points (crashed at $crashes of them) before it finished" test "$n" -ge 20
is "$final" 0 "the run without a crash succeeds"
is "$bad_open" 0 "qemu-img reads the image after every crash"
is "$bad_vhdi" 0 "vhdiinfo accepts the image after every crash"
is "$bad_data" 0 "every 4 KiB reads old or new after every crash"
ok "the finished image reads as the source" qemu_oracle_compare -f raw -F vpc new.raw t.vhd
done_testing
