#!/bin/bash
# 417-clone-block-source.t — a disk on a block device is copied into a
# file (type='block' <source dev> becomes type='file' <source file>), and
# a domain without <uuid> or <mac> gets them, indented like its neighbours.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

mkdir -p vm
qemu-img create -q -f raw vm/lun.img 8M
qemu-io -f raw -c 'write -P 0x77 1M 1M' vm/lun.img > /dev/null
if [ "$(id -u)" = 0 ] && command -v losetup > /dev/null && dev=$(losetup -f --show vm/lun.img 2> /dev/null); then
    trap 'losetup -d "$dev"; _tap_cleanup' EXIT
    cat > vm/blk.xml <<XML
<domain type='kvm'>
  <name>blk</name>
  <memory>65536</memory>
  <os>
    <type arch='x86_64'>hvm</type>
  </os>
  <devices>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source dev='$dev'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='default'/>
    </interface>
  </devices>
</domain>
XML
    kimg clone --original-xml vm/blk.xml -n blk2 -f vm/copy.img -q
    is "$RC" 0 "a block device source"
    cp out new.xml
    is "$(disk_get new.xml vda type):$(disk_get new.xml vda source)" "file:$T/vm/copy.img" "type='file', <source file>"
    ok "the copy reads as the device" qemu-img compare -q -f raw -F raw "$dev" vm/copy.img
    ok "sparse (1M of data in 8M)" test "$(du -k vm/copy.img | cut -f1)" -le 1100
    validate new.xml "valid"
    like "$(sed -n 3p new.xml)" '^  <uuid>[0-9a-f-]{36}</uuid>$' "a <uuid> added after <name>, indented"
    like "$(grep -B1 '<source network' new.xml | head -1)" '^      <mac address="52:54:00:' "a <mac> first in <interface>, indented"
else
    skip_all "needs root and a loop device"
fi
done_testing
