#!/bin/bash
# 411-clone-reflink.t — --reflink shares extents with FICLONE: refused with
# a clear line (and nothing left behind) where the filesystem cannot; on a
# reflink filesystem (XFS, when root and mkfs.xfs are there) the clones are
# exact copies sharing the original's blocks.
. "$(dirname "$0")/lib.sh"
. "$KIMG_SRC/tests/images/domains/setup.sh"

clone_fixture tiny
kimg clone --original-xml vm/tiny.xml -n t2 --auto-clone --reflink
fs=$(stat -f -c %T vm)
if [ "$RC" = 0 ]; then
    skip "refused where unsupported" "$fs supports reflinks here"
    skip "x" "$fs"; skip "x" "$fs"
else
    err_line "--reflink on $fs"
    like "$(< err)" "reflink.*cannot share extents" "says the filesystem cannot"
    is "$(files_in vm | grep -v -e '^tiny' -e '^nvram$')" "" "nothing left behind"
fi

if [ "$(id -u)" != 0 ] || ! command -v mkfs.xfs > /dev/null; then
    skip_rest="needs root and mkfs.xfs (Debian package xfsprogs)"
elif ! { truncate -s 320M xfs.img && mkfs.xfs -q -m reflink=1 xfs.img && mkdir -p x &&
         mount -o loop xfs.img x; } 2> /dev/null; then
    skip_rest="cannot mount an XFS loop image here"
else
    skip_rest=
    trap 'umount "$T/x"; _tap_cleanup' EXIT
fi
if [ -n "$skip_rest" ]; then
    for n in 1 2 3 4 5 6; do skip "reflink on XFS ($n)" "$skip_rest"; done
    done_testing
fi
clone_fixture web01 "$T/x/vm"
kimg clone --original-xml x/vm/web01.xml -n w2 --auto-clone --reflink -q
is "$RC" 0 "--reflink on XFS"
ok "vda: byte-identical" cmp -s x/vm/web01.qcow2 x/vm/w2.qcow2
ok "vdb: byte-identical" cmp -s x/vm/data.img x/vm/data-clone.img
ok "vdc: still an overlay of base.qcow2 (same folder)" qemu_oracle_compare x/vm/logs.qcow2 x/vm/logs-clone.qcow2
ok "nvram reflinked" cmp -s x/vm/nvram/web01_VARS.fd x/vm/nvram/w2_VARS.fd
mkdir -p x/other
kimg clone --original-xml x/vm/web01.xml -n w3 -f x/other/a -f x/other/b -f x/other/c --reflink
like "$(< err)" "relative to its folder" "an overlay with a relative backing name is refused into another folder"
done_testing
