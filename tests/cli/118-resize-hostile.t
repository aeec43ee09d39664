#!/bin/bash
# resize of damaged images: a bad header, L1 entry, L2 entry or refcount
# table entry gives a one-line error and a non-zero exit (never a crash or
# a hang) whether the image grows or shrinks; a damaged image that does
# resize stays no worse in qemu-img check than it was.
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own

qemu-img create -q -f qcow2 -o cluster_size=4k good.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x11 0 4M" good.qcow2 > /dev/null
l1=$(get_be 8 good.qcow2 40); rt=$(get_be 8 good.qcow2 48)
l2=$(( $(get_be 8 good.qcow2 "$l1") & 0x00fffffffffffe00 ))

# name|damage (run on $f)
cases=(
    "l1-size-huge|put_be 4 \$f 36 4294967295"
    "l1-offset-past-eof|put_be 8 \$f 40 1099511627776"
    "l1-offset-unaligned|put_be 8 \$f 40 $((l1 + 8))"
    "reftable-past-eof|put_be 8 \$f 48 1099511627776"
    "reftable-clusters-huge|put_be 4 \$f 56 4294967295"
    "l1-entry-unaligned|put_be 8 \$f $l1 $((0x8000000000000000 | (l2 + 512)))"
    "l1-entry-past-eof|put_be 8 \$f $((l1 + 8)) $((0x8000000000000000 | (1 << 40)))"
    "l1-entry-on-header|put_be 8 \$f $((l1 + 8)) $((0x8000000000000000))"
    "l2-entry-unaligned|put_be 8 \$f $((l2 + 8 * 400)) $((0x8000000000000000 | 4608))"
    "l2-entry-reserved-bits|put_be 8 \$f $((l2 + 8 * 500)) $((0x8000000000000000 | 0x10000 | 0x2))"
    "refblock-entry-unaligned|put_be 8 \$f $rt 4097"
    "refblock-entry-zero|put_be 8 \$f $rt 0"
    "refcount-of-l2-zero|$Q2 set-rc \$f $l2 0"
)
for c in "${cases[@]}"; do
    name=${c%%|*}; damage=${c#*|}
    for op in "+64M" "--shrink 1M" "--preallocation=metadata +1M"; do
        f=h.qcow2; cp good.qcow2 $f; eval "$damage"
        before=0; qemu-img check -q $f > /dev/null 2>&1 || before=$?
        set -- $op
        kimg resize "${@:1:$#-1}" $f "${!#}"
        if [ "$RC" -eq 0 ]; then
            after=0; qemu-img check -q $f > /dev/null 2>&1 || after=$?
            ok "$name, resize $op: succeeded; qemu-img check $after (was $before)" \
                test "$after" -le "$before" -o "$after" -eq 3
        else
            err_line "$name, resize $op"
        fi
    done
done

# a size field off a 512-byte boundary (3000000; qemu-img never writes
# one): read as qemu reads it, in whole sectors (2999808 bytes), so info
# prints what qemu-img prints; a resize keeps those bytes and the grown
# part reads as zeros from there (qemu-img leaves the rest of that 4 KiB
# as it was: kimg is stricter), the image checks clean
qemu-img create -q -f qcow2 odd.qcow2 3000320
qemu-io -f qcow2 -c 'write -P 0x61 0 3000320' odd.qcow2 > /dev/null
printf '\x00\x00\x00\x00\x00\x2d\xc6\xc0' | dd of=odd.qcow2 bs=1 seek=24 conv=notrunc status=none
qemu-img info --output=json odd.qcow2 > odd.q.json
kimg info --output=json odd.qcow2
is_file out odd.q.json "size field 3000000: info as qemu-img's (2999808 bytes)"
kimg resize odd.qcow2 8M
is "$RC" 0 "  resize to 8M"
ok "  the old 2999808 bytes kept" qemu-io -f qcow2 -c 'read -P 0x61 0 2999808' odd.qcow2
is "$(qemu-io -f qcow2 -c 'read -P 0 2999808 5388800' odd.qcow2 | grep -c 'verification failed')" 0 "  the rest reads as zeros"
ok "  qemu-img check is clean" check_clean odd.qcow2
done_testing
