#!/bin/bash
# 410-clone-nonsparse.t — --nonsparse allocates the clones fully (raw and
# qcow2), with the same content; a clone that cannot fit is refused first.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture web01
kimg clone --original-xml vm/web01.xml -n w2 --auto-clone --nonsparse -q
is "$RC" 0 "--nonsparse"
ok "data-clone.img reads as the original" qemu_oracle_compare vm/data.img vm/data-clone.img
ok "w2.qcow2 reads as the original" qemu_oracle_compare vm/web01.qcow2 vm/w2.qcow2
ok "w2.qcow2: qemu-img check" check_clean vm/w2.qcow2
k=$(du -k vm/data-clone.img | cut -f1)
ok "data-clone.img fully allocated (${k}K of 32768K)" test "$k" -ge 32768
k=$(du -k vm/w2.qcow2 | cut -f1)
ok "w2.qcow2 fully allocated (${k}K for 64M)" test "$k" -ge 65536
k=$(du -k vm/logs-clone.qcow2 | cut -f1)
ok "the flattened overlay too (${k}K for 32M)" test "$k" -ge 32768

# refused before copying when the filesystem is too small (a 1 MiB tmpfs)
if [ "$(id -u)" = 0 ] && mkdir -p small && mount -t tmpfs -o size=1m tmpfs small 2> /dev/null; then
    trap 'umount "$T/small"; _tap_cleanup' EXIT
    kimg clone --original-xml vm/web01.xml -n w3 -f small/a -f small/b -f small/c --nonsparse
    err_line "--nonsparse into a filesystem too small"
    like "$(< err)" "need .* free" "...says how much is needed"
    is "$(files_in small)" "" "...and creates nothing"
else
    skip "too small filesystem" "needs root to mount a tmpfs"; skip "x" "root"; skip "x" "root"
fi
done_testing
