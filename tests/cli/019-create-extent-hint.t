#!/bin/bash
# The file protocol's creation options, as qemu-img 7.2's file-posix:
# -o extent_size_hint=SIZE and nocow=on|off are accepted by create (raw
# and qcow2, and qcow2's data file) and convert, shown in the
# "Formatting" line as qemu-img shows them; a hint of 4 GiB or more is
# refused.  On XFS (root, mkfs.xfs) the hint is set on every new file:
# 1 MiB unless given, 0 clears it, one XFS refuses gives qemu-img's
# warning (only when given); on other file systems it is accepted and
# ignored.  On btrfs (root, mkfs.btrfs) nocow=on sets the No_COW ('C')
# attribute on the new file (and a data file), nocow=off or none does
# not.  Compared with the files qemu-img makes on the same folder.
. "$(dirname "$0")/lib.sh"

for c in "-f raw -o extent_size_hint=2M" "-f raw -o nocow=on,extent_size_hint=64k,preallocation=falloc" \
         "-f qcow2 -o extent_size_hint=0" "-f qcow2 -o nocow=on,extent_size_hint=64k,preallocation=falloc" \
         "-f qcow2 -o extent_size_hint=1M,data_file=e.data" "-f raw -o extent_size_hint=4294967295" \
         "-f raw -o nocow=off"; do
    oracle "create $c" create $c e.img 1M
    is "$(< "$T/err")" "" "create $c: no warning here"
done
for c in "-f raw -o extent_size_hint=4G" "-f qcow2 -o extent_size_hint=5G" "-f raw -o extent_size_hint=x" \
         "-f raw -o nocow=maybe"; do
    qimg create $c e.img 1M; kimg create $c e.img 1M
    is "$RC" "$QRC" "create $c: exit code as qemu-img's"
    err_line "create $c"
done
like "$(< "$T/err")" "nocow" "nocow=maybe: names the option"
kimg create -f raw -o extent_size_hint=4G e.img 1M
like "$(< "$T/err")" "Extent size hint is too large" "4 GiB: qemu-img's reason"
qemu-img create -q -f raw src.raw 1M
oracle "convert -o extent_size_hint" convert -O qcow2 -o extent_size_hint=2M src.raw c.qcow2
oracle "convert -o nocow" convert -O raw -o nocow=on src.raw c.raw

# ---- btrfs: nocow=on really sets the No_COW attribute (libvirt's <nocow/>) ---
if [ "$(id -u)" = 0 ] && command -v mkfs.btrfs > /dev/null && command -v lsattr > /dev/null &&
   grep -qw btrfs /proc/filesystems && truncate -s 300M btrfs.img &&
   mkfs.btrfs -q btrfs.img > /dev/null 2>&1 && mkdir -p b && mount -o loop btrfs.img b 2> /dev/null; then
    trap 'cd /; umount "$T/b"; _tap_cleanup' EXIT
    cattr() { lsattr -d "$1" 2> /dev/null | cut -d' ' -f1 | tr -cd C; }
    cd b
    # q-NAME made by qemu-img, k-NAME by kimg, in the same folder
    for c in "create -f raw -o nocow=on @.raw 1M" "create -f qcow2 -o nocow=on @.qcow2 1M" \
             "create -f qcow2 -o nocow=on,data_file=@.data @.qcow2 1M" \
             "create -f raw @.raw 1M" "create -f raw -o nocow=off @.raw 1M" \
             "convert -O qcow2 -o nocow=on ../src.raw @.qcow2" "convert -O raw ../src.raw @.raw"; do
        rm -f q.* k.*
        qimg ${c//@/q}; kimg ${c//@/k}
        is "$RC" "$QRC" "btrfs: $c: exit code as qemu-img's"
        for q in q.*; do
            k=k.${q#q.}
            is "$(cattr "$k")" "$(cattr "$q")" "btrfs: $c: $k's No_COW attribute ('$(cattr "$q")') as qemu-img's"
        done
    done
    is "$(kimg create -f raw -o nocow=on n.raw 1M; cattr n.raw)" C "btrfs: nocow=on sets C"
    cd ..
    umount b && trap _tap_cleanup EXIT
else
    skip "btrfs No_COW attribute" "needs root, mkfs.btrfs (Debian package btrfs-progs), lsattr and a btrfs loop mount"
fi

# ---- XFS: the hint really set ------------------------------------------------
if [ "$(id -u)" != 0 ] || ! command -v mkfs.xfs > /dev/null || ! command -v xfs_io > /dev/null; then
    skip "XFS extent size hints" "needs root, mkfs.xfs and xfs_io (Debian package xfsprogs)"
    done_testing; exit 0
fi
if ! { truncate -s 300M xfs.img && mkfs.xfs -q xfs.img && mkdir -p x &&
       mount -o loop xfs.img x; } 2> /dev/null; then
    skip "XFS extent size hints" "cannot mount an XFS loop image here"
    done_testing; exit 0
fi
trap 'cd /; umount "$T/x"; _tap_cleanup' EXIT
hint() { xfs_io -c extsize "$1" | sed 's/ .*//'; }
cd x
# q-NAME made by qemu-img, k-NAME by kimg, in the same folder
for c in "create -f raw @.raw 1M" "create -f raw -o extent_size_hint=2M @.raw 1M" \
         "create -f raw -o extent_size_hint=0 @.raw 1M" "create -f qcow2 @.qcow2 1M" \
         "create -f qcow2 -o extent_size_hint=4M @.qcow2 1M" \
         "create -f qcow2 -o extent_size_hint=256k,data_file=@.data @.qcow2 1M" \
         "create -f raw -o extent_size_hint=1000 @.raw 1M" \
         "convert -O qcow2 -o extent_size_hint=8M ../src.raw @.qcow2" "convert -O raw ../src.raw @.raw"; do
    rm -f q.* k.*
    qimg ${c//@/q}; kimg ${c//@/k}
    is "$RC" "$QRC" "XFS: $c: exit code as qemu-img's"
    is "$(sed 's/^kimg: //' "$T/err")" "$(sed 's/^qemu-img: //' "$T/qerr")" "XFS: $c: warnings as qemu-img's"
    for q in q.*; do
        k=k.${q#q.}
        is "$(hint "$k")" "$(hint "$q")" "XFS: $c: the hint of $k as qemu-img's"
    done
done
is "$(hint k.raw)" "[1048576]" "XFS: convert's new file has qemu's default hint"
done_testing
