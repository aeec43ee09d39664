#!/bin/bash
# 412-clone-failure.t — a failure half-way removes every file the run made
# (disks already copied, temporary files, nvram) and leaves the sources as
# they were: a file size limit (EFBIG), a full filesystem (ENOSPC), SIGTERM
# and SIGINT in the middle of a copy.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
snapshot_sources vm
files_in vm > before.list
left() { files_in vm | diff before.list - | grep '^>' || true; }

# vda (1.4M of data) fits under the limit, vdc's flattened copy (2.2M) does not
run bash -c "ulimit -f 2048; exec '$KIMG' clone --original-xml vm/web01.xml -n w2 --auto-clone -q"
is "$RC" 1 "a write past ulimit -f fails the run (exit 1, not SIGXFSZ)"
like "$(< err)" "^kimg: vd.: cloning .*File too large" "one line naming the disk and the cause"
is "$(left)" "" "every file removed"
ok "sources unchanged" sources_unchanged vm

if [ "$(id -u)" = 0 ] && mkdir -p small && mount -t tmpfs -o size=2m tmpfs small 2> /dev/null; then
    trap 'umount "$T/small"; _tap_cleanup' EXIT
    kimg clone --original-xml vm/web01.xml -n w3 -f small/a.qcow2 -f small/b.img -f small/c.qcow2 \
         --nvram small/VARS.fd -q
    is "$RC" 1 "a full filesystem fails the run"
    like "$(< err)" "No space left|too large|No space" "says so"
    is "$(files_in small)" "" "every file removed"
else
    skip "full filesystem" "needs root to mount a tmpfs"; skip "x" "root"; skip "x" "root"
fi

# signals: a disk big enough that its copy is still running when one comes
mkdir -p store
qemu-img create -q -f qcow2 store/big.qcow2 1G
qemu-io -f qcow2 -c "write -P 0x5a 0 256M" store/big.qcow2 > /dev/null
big_stat=$(stat -c '%s %Y' store/big.qcow2)
sed "s|$T/vm/data.img|$T/store/big.qcow2|; s|type='raw' cache|type='qcow2' cache|" vm/web01.xml > big.xml
files_in vm > before.list
for sig in TERM INT; do
    env --default-signal=INT "$KIMG" clone --original-xml big.xml -n "s$sig" --auto-clone -q > /dev/null 2>&1 &
    pid=$!
    for i in $(seq 1 2000); do   # until big.qcow2's temporary copy exists
        ls -a store | grep -q '^\.big-clone\.qcow2\.kimg-' && break
        nap 0.005
    done
    kill -$sig $pid
    wait $pid; rc=$?
    if [ "$rc" = 0 ]; then
        skip "SIG$sig mid-copy" "the copy finished before the signal"; skip "x" "fast"
        files_in vm | diff before.list - | sed -n 's/^> //p' | (cd vm && xargs -r rm -f)
        rm -f store/big-clone.qcow2
        continue
    fi
    is "$rc" "$((128 + $(kill -l $sig)))" "SIG$sig: the run ends by the signal"
    is "$(left; files_in store | grep -v '^big.qcow2$')" "" "SIG$sig: every file removed (copies done and in progress)"
done
ok "sources unchanged" sources_unchanged vm
is "$(stat -c '%s %Y' store/big.qcow2)" "$big_stat" "big.qcow2 unchanged"
done_testing
