#!/bin/bash
# A safe rebase of a damaged overlay whose refcount table names the active
# L1 table or the refcount table itself as a refcount block: the copy's
# allocations would write refcounts over those tables (the overlay then
# reads differently).  Refused as qemu-img refuses it (exit 1, the image
# marked corrupt, one "kimg: " line), the L1 table and the content
# unchanged.  Twins: q/ by qemu-img, k/ by kimg.
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own

qemu-img create -q -f qcow2 old.qcow2 4M
qemu-io -c "write -P 0x11 0 4M" old.qcow2 > /dev/null
qemu-img create -q -f qcow2 -b old.qcow2 -F qcow2 o.orig
qemu-io -c "write -P 0x21 0 128k" -c "write -c -P 0x22 1M 64k" -c "write -z 2M 64k" o.orig > /dev/null
qemu-img convert -O raw o.orig want.raw
l1=$(get_be 8 o.orig 40); rt=$(get_be 8 o.orig 48); cs=65536

for what in "L1 table:$l1" "refcount table:$rt"; do
    name=${what%%:*}; at=${what#*:}
    for t in q k; do
        mkdir -p $t; cp old.qcow2 $t/; cp o.orig $t/o.qcow2
        put_be 8 $t/o.qcow2 $rt $at                 # refcount table entry 0
        qemu-img create -q -f qcow2 $t/new.qcow2 4M
    done
    (cd q && qemu-img rebase -b new.qcow2 -F qcow2 o.qcow2) > /dev/null 2>&1; qrc=$?
    cd k; kimg rebase -b new.qcow2 -F qcow2 o.qcow2; cd ..
    is "$RC" "$qrc" "refcount block on the $name: exit $qrc as qemu-img's"
    err_line "refcount block on the $name"
    like "$(< "$T/err")" "overlaps" "refcount block on the $name: says it overlaps metadata"
    ok "refcount block on the $name: L1 table unchanged" \
        cmp <(dd if=k/o.qcow2 bs=$cs skip=$((l1 / cs)) count=1 2> /dev/null) \
            <(dd if=o.orig bs=$cs skip=$((l1 / cs)) count=1 2> /dev/null)
    ok "refcount block on the $name: content unchanged" \
        qemu-img compare -q -U -F raw k/o.qcow2 want.raw
    like "$(qemu-img info -U k/o.qcow2)" "corrupt: true" "refcount block on the $name: marked corrupt"
done
done_testing
