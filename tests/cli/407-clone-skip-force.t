#!/bin/bash
# 407-clone-skip-force.t — --skip-copy TARGET shares a disk that would be
# cloned (and lets a network disk through); --force-copy TARGET clones a
# readonly or shareable one; unknown targets and contradictions refused.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
clone_fixture db01
kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --skip-copy vdb --force-copy sda -q
is "$RC" 0 "--skip-copy vdb --force-copy sda"
cp out new.xml
is "$(disk_get new.xml vdb source)" "$T/vm/data.img" "vdb shared: XML untouched"
ok "vdb not copied" test ! -e vm/data-clone.img
is "$(disk_get new.xml sda source)" "$T/vm/install-clone.iso" "sda (readonly cdrom) cloned"
ok "sda copy reads as the original" qemu_oracle_compare vm/install.iso vm/install-clone.iso
is "$(xml_get new.xml "devices/disk[@device='cdrom']/readonly" | wc -l)" 2 "its <readonly/> kept"

kimg clone --original-xml vm/web01.xml -n w3 --auto-clone --force-copy vdd --print-xml
is "$(disk_get out vdd source)" "$T/vm/shared-clone.img" "--force-copy a shareable disk"

kimg clone --original-xml vm/db01.xml --auto-clone --skip-copy vdb --skip-copy vdc -q
is "$RC" 0 "network disks skipped: the clone goes through"
is "$(disk_get out vdb type)" "network" "vdb: still the network disk"
ok "vda cloned" qemu_oracle_compare vm/db01.qcow2 vm/db01-clone.qcow2

kimg clone --original-xml vm/web01.xml -n w4 --auto-clone --skip-copy vdz --print-xml
err_line "--skip-copy of an unknown target"
kimg clone --original-xml vm/web01.xml -n w4 --auto-clone --force-copy vdz --print-xml
err_line "--force-copy of an unknown target"
kimg clone --original-xml vm/web01.xml -n w4 --auto-clone --force-copy sdb --print-xml
err_line "--force-copy of an empty cdrom"
like "$(< err)" "no storage to copy" "...says there is nothing to copy"
kimg clone --original-xml vm/web01.xml -n w4 --auto-clone --force-copy vda --skip-copy vda --print-xml
err_line "--skip-copy and --force-copy of one disk"
kimg clone --original-xml vm/db01.xml --auto-clone --force-copy sda --skip-copy vdb --skip-copy vdc --print-xml
err_line "--force-copy of a network cdrom"
done_testing
