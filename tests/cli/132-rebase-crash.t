#!/bin/bash
# kimg rebase (safe) killed before each of its file changes in turn
# (KIMG_CRASH_AFTER=N, N = 0, 1, ... until it completes): after every
# crash the overlay passes qemu-img check (clean or leaks only) and reads
# exactly as before, through whichever backing file its header names.
. "$(dirname "$0")/lib.sh"

qemu-img create -q -f qcow2 a.qcow2 4M
qemu-io -c "write -P 0x11 0 2M" -c "write -P 0x12 3M 256k" a.qcow2 > /dev/null
qemu-img create -q -f qcow2 b.qcow2 4M
qemu-io -c "write -P 0x11 0 256k" -c "write -P 0x21 1M 512k" -c "write -P 0x22 3584k 64k" b.qcow2 > /dev/null
qemu-img create -q -f qcow2 -o cluster_size=64k -b a.qcow2 -F qcow2 o.orig
qemu-io -c "write -P 0x55 0 64k" -c "write -P 0x56 1200k 100k" -c "write -z 3M 64k" o.orig > /dev/null
qemu-img convert -O raw o.orig want.raw

run_crashes() {
    local name=$1; shift
    local n=0 bad=0 rc st r
    while :; do
        cp o.orig o.qcow2
        KIMG_CRASH_AFTER=$n "$KIMG" rebase "$@" o.qcow2 > /dev/null 2> err; rc=$?
        r=0; qemu-img check o.qcow2 > /dev/null 2>&1 || r=$?
        if [ "$r" != 0 ] && [ "$r" != 3 ]; then bad=1; diag "$name: crash after $n: check exit $r"; break; fi
        if ! qemu_oracle_compare o.qcow2 want.raw; then bad=1; diag "$name: crash after $n: content changed"; break; fi
        [ $rc = 222 ] || break
        n=$((n + 1))
    done
    is "$rc" 0 "$name: completes after $n crash points"
    is "$bad" 0 "$name: after each crash: check clean or leaks only, content as before"
    ok "$name: many crash points" test $n -ge 10
    st=$(qemu-img info o.qcow2 | grep '^backing file:' || true)
    is "$st" "${WANT_BACKING-backing file: b.qcow2}" "$name: the finished overlay names the new backing"
}
run_crashes "onto b" -b b.qcow2 -F qcow2
WANT_BACKING= run_crashes "flatten" -b ""
done_testing
