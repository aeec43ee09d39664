#!/bin/bash
# Crashes (KIMG_CRASH_AFTER=N) at every point of convert -n into a
# twoGbMaxExtentSparse VMDK that qemu-img made (an extent file of old
# data beside its descriptor file): after each, qemu-img reads the image
# and every 4 KiB reads as its old or its new content (each extent's new
# grains are linked only after their data is synced; the descriptor's new
# CID is one in-place write).  The run without a crash gives the source's
# content.  Test 190 reruns it under the power-failure model.
# make check: the crash points crash_next takes; check-slow the rest.
. "$(dirname "$0")/lib.sh"
# crashes into a split sparse image of old data (2 MiB: every grain the
# source has as zeros is written too, zeros as data, as qemu-img writes
# them into an extent without zeroed grains)
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse base.vmdk 2M
qemu-io -f vmdk -c 'write -P 0x11 0 256k' -c 'write -P 0x12 1M 320k' base.vmdk > /dev/null
qemu-img convert -f vmdk -O raw base.vmdk old.raw
truncate -s 2M crash.raw
qemu-io -f raw -c 'write -P 0x41 192k 128k' -c 'write -P 0x42 1100k 100k' -c 'write -P 0x43 1800k 64k' \
    crash.raw > /dev/null
crashes=0 bad_open=0 bad_data=0 final=
n=0
while :; do
    rm -f t*.vmdk; cp base.vmdk t.vmdk; cp base-s001.vmdk t-s001.vmdk
    sed -i 's/"base-s001.vmdk"/"t-s001.vmdk"/' t.vmdk
    R=0; KIMG_CRASH_AFTER=$n "$KIMG" convert -n -f raw -O vmdk crash.raw t.vmdk 2> err || R=$?
    if [ "$R" != 222 ]; then final=$R; break; fi
    crashes=$((crashes + 1))
    if ! qemu-img convert -f vmdk -O raw t.vmdk got.raw 2> /dev/null; then
        bad_open=$((bad_open + 1)); diag "crash $n: qemu-img cannot read it"
    elif ! $PY "$KIMG_SRC/tests/cli/crash-oldnew.py" old.raw crash.raw got.raw > why; then
        bad_data=$((bad_data + 1)); diag "crash $n: $(< why)"
    fi
    n=$(crash_next $n)
done
ok "convert -n into a split sparse VMDK has crash points ($crashes crashes)" test "$crashes" -ge 4
is "$final" 0 "the run without a crash succeeds"
is "$bad_open" 0 "qemu-img reads the image after every crash"
is "$bad_data" 0 "every 4 KiB reads old or new after every crash"
ok "the finished image reads as the source" qemu_oracle_compare -f raw -F vmdk crash.raw t.vmdk
done_testing
