#!/bin/bash
# 408-clone-preserve.t — --preserve-data copies nothing: each --file must
# exist and the XML points at it (a block device becomes <source dev>);
# the nvram is only re-pointed.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
mkdir -p keep
qemu-img create -q -f qcow2 keep/a.qcow2 1M; qemu-img create -q -f raw keep/b.img 1M
qemu-img create -q -f qcow2 keep/c.qcow2 1M
snapshot_sources keep
kimg clone --original-xml vm/web01.xml -n w2 --preserve-data -f keep/a.qcow2 -f keep/b.img -f keep/c.qcow2 -q
is "$RC" 0 "--preserve-data with existing files"
cp out new.xml
validate new.xml "the new XML validates"
is "$(disk_get new.xml vda source)|$(disk_get new.xml vdc source)" "$T/keep/a.qcow2|$T/keep/c.qcow2" "XML points at them"
is "$(disk_get new.xml vdc backing)" "" "vdc: the original's <backingStore> is not claimed for the new file"
ok "the files are left as they were" sources_unchanged keep
is "$(files_in keep)" "$(printf 'a.qcow2\nb.img\nc.qcow2')" "no file created"
is "$(xml_get new.xml os/nvram)" "$T/vm/nvram/w2_VARS.fd" "nvram re-pointed..."
ok "...not copied" test ! -e vm/nvram/w2_VARS.fd

kimg clone --original-xml vm/web01.xml -n w2 --preserve-data -f keep/a.qcow2 -f keep/nope -f keep/c.qcow2
err_line "--preserve-data with a missing --file"
kimg clone --original-xml vm/web01.xml -n w2 --preserve-data --auto-clone
err_line "--preserve-data without --file"

if [ "$(id -u)" = 0 ] && command -v losetup > /dev/null && dev=$(losetup -f --show keep/b.img 2> /dev/null); then
    _tap_bg_pids=; trap 'losetup -d "$dev"; _tap_cleanup' EXIT
    kimg clone --original-xml vm/web01.xml -n w2 --preserve-data -f keep/a.qcow2 -f "$dev" -f keep/c.qcow2 --print-xml
    is "$(disk_get out vdb type):$(disk_get out vdb source)" "block:$dev" "a block device: type='block', <source dev>"
    cp out blk.xml
    validate blk.xml "...valid"
else
    skip "a block device destination" "needs root and a loop device"
    skip "...valid" "needs root and a loop device"
fi
done_testing
