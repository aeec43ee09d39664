#!/bin/bash
# Crashes (KIMG_CRASH_AFTER=N) at every point of convert -n -t writeback
# into an existing dynamic VDI (blocks of old data in place, new blocks to
# allocate, zeros over old data): after every crash qemu-img check is
# clean and every 4 KiB of the image reads as its old or its new content
# (a block's data is synced before the header's count and the block map
# entry, which change together in one write).  The run without a crash gives
# the source's content; a second -n after a crash in the middle too.
. "$(dirname "$0")/lib.sh"
MiB=$((1024 * 1024))
size=$((16 * MiB))
qemu-img create -q -f vdi base.vdi $size
qemu-io -f vdi -c 'write -P 0x11 0 1M' -c 'write -P 0x12 4M 2M' -c 'write -P 0x13 10M 64k' \
    base.vdi > /dev/null
vsize=$(qemu-img info -f vdi --output=json base.vdi | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
qemu-img convert -f vdi -O raw base.vdi old.raw
truncate -s "$vsize" new.raw
qemu-io -f raw -c 'write -P 0x21 512k 1M' -c 'write -P 0x22 2M 100k' -c 'write -P 0x23 8M 3M' \
    -c 'write -P 0x24 15M 4k' new.raw > /dev/null
head -c 300000 /dev/urandom | dd of=new.raw bs=4096 seek=1500 conv=notrunc status=none
# 4-6 MiB (old data) becomes zeros in new.raw: a zero write, no block

# the copy engine writes a VDI's new blocks in parallel (alloc_data) and
# links them in slot order when their data is written: also with the data
# writes held back (KIMG_CONVERT_WRITE_LAG) while later blocks are planned
for lag in 0 3; do
crashes=0 bad_open=0 bad_vhdi=0 bad_data=0 final=
for n in $(crash_points 400); do
    cp base.vdi t.vdi
    R=0; KIMG_CONVERT_WRITE_LAG=$lag KIMG_CRASH_AFTER=$n "$KIMG" convert -m 16 -n -t writeback -f raw -O vdi new.raw t.vdi 2> err || R=$?
    if [ "$R" != 222 ]; then final=$R; break; fi
    crashes=$((crashes + 1))
    if ! qemu-img convert -f vdi -O raw t.vdi got.raw 2> /dev/null; then
        bad_open=$((bad_open + 1)); continue
    fi
    check_clean t.vdi || bad_vhdi=$((bad_vhdi + 1))
    $PY "$KIMG_SRC/tests/cli/crash-oldnew.py" old.raw new.raw got.raw > why || {
        bad_data=$((bad_data + 1)); diag "crash $n: $(< why)"; }
    # kimg finishes the job on the crashed image
    if [ $((n % 7)) = 3 ]; then
        "$KIMG" convert -n -t writeback -f raw -O vdi new.raw t.vdi 2> /dev/null &&
            qemu_oracle_compare -f raw -F vdi new.raw t.vdi || { bad_data=$((bad_data + 1)); diag "crash $n: a second -n did not finish the job"; }
    fi
done
ok "[lag $lag] the convert has $n change points (crashed at $crashes of them) before it finished" test "$n" -ge 20
is "$final" 0 "[lag $lag] the run without a crash succeeds"
is "$bad_open" 0 "[lag $lag] qemu-img reads the image after every crash"
is "$bad_vhdi" 0 "[lag $lag] qemu-img check is clean after every crash"
is "$bad_data" 0 "[lag $lag] every 4 KiB reads old or new after every crash"
ok "[lag $lag] the finished image reads as the source" qemu_oracle_compare -f raw -F vdi new.raw t.vdi
done
done_testing
