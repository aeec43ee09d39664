#!/bin/bash
# kimg commit of damaged tops, on twins against qemu-img (q/ by qemu-img,
# k/ by kimg): an L2 entry past the end of the file (its data reads as
# zeros, for qemu as for kimg), an L2 entry naming the top's own L1 table
# as data, a refcount table entry naming the L1 table or the refcount table.
# Exit code as qemu-img's; afterwards the top passes qemu-img check (the
# emptied top's refcounts are recounted from what stays, so a bogus data
# reference cannot free the L1 table, as lowering refcounts entry by entry
# did) and top and base read as qemu-img's twins.  The step-by-step
# emptying kept for files too large to recount refuses the bogus entry.
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own

qemu-img create -q -f qcow2 base.orig 4M
qemu-io -c "write -P 0x11 0 4M" base.orig > /dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 -u top.orig 4M
qemu-io -c "write -P 0x21 0 128k" -c "write -c -P 0x22 1M 64k" -c "write -z 2M 64k" \
    "json:{\"driver\":\"qcow2\",\"backing\":null,\"file\":{\"driver\":\"file\",\"filename\":\"top.orig\"}}" > /dev/null
l1=$(get_be 8 top.orig 40); rt=$(get_be 8 top.orig 48)

# case NAME PATCH...: PATCH runs in each twin folder on top.qcow2
case_() {
    local name=$1; shift
    for t in q k; do
        rm -rf $t; mkdir $t; cp base.orig $t/base.qcow2; cp top.orig $t/top.qcow2
        (cd $t && "$@")
    done
    (cd q && qemu-img commit -q top.qcow2) > /dev/null 2>&1; local qrc=$?
    cd k; kimg commit -q top.qcow2; cd ..
    is "$RC" "$qrc" "$name: exit $qrc as qemu-img's" || diag "$(head -3 "$T/err")"
    ok "$name: the top passes qemu-img check" check_clean k/top.qcow2
    ok "$name: the top reads as qemu-img's" qemu_oracle_compare k/top.qcow2 q/top.qcow2
    ok "$name: the base reads as qemu-img's" qemu_oracle_compare k/base.qcow2 q/base.qcow2
}
set_l2() { $Q2 set-l2 top.qcow2 "$1" "$(printf '%u' "$2")" > /dev/null; }
case_ "L2 entry past the end of the file" set_l2 0 $(( (1 << 40) | (1 << 63) ))
case_ "L2 entry naming the L1 table" set_l2 0 $(( l1 | (1 << 63) ))
# the step-by-step emptying (files too large to recount; forced here)
# refuses that entry before changing anything but the corrupt bit
rm -rf k; mkdir k; cp base.orig k/base.qcow2; cp top.orig k/top.qcow2
(cd k && set_l2 0 $(( l1 | (1 << 63) ))); cp k/top.qcow2 top.before
cd k; KIMG_EMPTY_INCREMENTAL=1 kimg commit -q top.qcow2; cd ..
is "$RC" 1 "L2 entry naming the L1 table, step by step: refused"; err_line "step by step"
like "$(< "$T/err")" "names metadata as data" "step by step: says why"
is "$(cmp -l k/top.qcow2 top.before | awk '{print $1}' | tr '\n' ' ')" "80 " \
    "step by step: only the corrupt bit changed"
case_ "refcount table entry naming the L1 table" put_be 8 top.qcow2 $rt $l1
case_ "refcount table entry naming the refcount table" put_be 8 top.qcow2 $rt $rt
done_testing
