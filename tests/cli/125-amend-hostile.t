#!/bin/bash
# amend of damaged images: a bad header field, refcount table entry, L1 or
# L2 entry (active or a snapshot's), a zero cluster pointing at metadata,
# gives a one-line error and a non-zero exit, never a crash or a hang,
# whether the refcount width or the compat level changes; an image that
# does get amended is no worse in qemu-img check than before.  A downgrade
# that drops hostile bitmaps frees nothing in use.
# make check: a third of the damage x option cases, of the damaged v2
# images and of the hostile bitmaps (lib.sh sampled); check-slow the rest.
. "$(dirname "$0")/lib.sh"
KIMG_TIMEOUT=30     # hostile input: each command under timeout, a hang fails on its own

qemu-img create -q -f qcow2 -o cluster_size=4k good.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x11 0 2M" -c "write -z 64k 8k" -c "write -z 1M 4k" good.qcow2 > /dev/null
qemu-img snapshot -c s1 good.qcow2
qemu-io -f qcow2 -c "write -P 0x12 512k 64k" good.qcow2 > /dev/null
l1=$(get_be 8 good.qcow2 40); rt=$(get_be 8 good.qcow2 48)
l2=$(( $(get_be 8 good.qcow2 "$l1") & 0x00fffffffffffe00 ))
sn=$(get_be 8 good.qcow2 64)
snl1=$(get_be 8 good.qcow2 "$sn")
zpos=$(( l2 + 8 * 16 ))          # the L2 entry of guest 64k (a zero cluster)

cases=(
    "l1-size-huge|put_be 4 \$f 36 4294967295"
    "reftable-past-eof|put_be 8 \$f 48 1099511627776"
    "reftable-clusters-huge|put_be 4 \$f 56 4294967295"
    "refblock-unaligned|put_be 8 \$f $rt 4097"
    "refblock-past-eof|put_be 8 \$f $rt $((1 << 40))"
    "refblock-zero|put_be 8 \$f $rt 0"
    "l1-entry-unaligned|put_be 8 \$f $l1 $((0x8000000000000000 | (l2 + 512)))"
    "l1-entry-past-eof|put_be 8 \$f $l1 $((0x8000000000000000 | (1 << 40)))"
    "snapshot-l1-entry-unaligned|put_be 8 \$f $snl1 $(( (l2 + 512) ))"
    "snapshot-l1-offset-past-eof|put_be 8 \$f $sn $((1 << 40))"
    "zero-cluster-on-reftable|put_be 8 \$f $zpos $((0x8000000000000001 | rt))"
    "zero-cluster-on-l1|put_be 8 \$f $zpos $((0x8000000000000001 | l1))"
    "zero-cluster-unaligned|put_be 8 \$f $zpos $((0x8000000000000001 | (l2 + 512)))"
    "refcount-of-l2-zero|$Q2 set-rc \$f $l2 0"
    "refcount-huge|$Q2 set-rc \$f $l2 65535"
)
for c in "${cases[@]}"; do
    name=${c%%|*}; damage=${c#*|}
    for o in refcount_bits=1 refcount_bits=64 compat=0.10 "compat=0.10,refcount_bits=16"; do
        sampled || continue     # check: a third of the cases; check-slow: the rest
        f=h.qcow2; cp good.qcow2 $f; eval "$damage"
        before=0; qemu-img check -q $f > /dev/null 2>&1 || before=$?
        kimg amend -o "$o" $f
        if [ "$RC" -eq 0 ]; then
            after=0; qemu-img check -q $f > /dev/null 2>&1 || after=$?
            ok "$name, amend -o $o: succeeded; qemu-img check $after (was $before)" \
                test "$after" -le "$before" -o "$after" -eq 3
        else
            err_line "$name, amend -o $o"
        fi
    done
done
# a damaged v2 image taken up
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
qemu-io -f qcow2 -c "write -P 0x13 0 1M" v2.qcow2 > /dev/null
qemu-img snapshot -c s1 v2.qcow2
snoff=$(get_be 8 v2.qcow2 64)
for d in "put_be 4 \$f $((snoff + 36)) 4294967295|snapshot extra data size huge" \
         "put_be 2 \$f $((snoff + 12)) 65535|snapshot id size huge" \
         "put_be 4 \$f 60 65536|snapshot count past the table"; do
    sampled || continue
    f=h2.qcow2; cp v2.qcow2 $f; eval "${d%%|*}"
    kimg amend -o compat=1.1 $f
    if [ "$RC" -eq 0 ]; then ok "${d#*|}: amended, clean" check_clean $f
    else err_line "${d#*|}"; fi
done
# a downgrade drops bitmaps and frees their clusters, but only clusters a
# bitmap may own: an in-use bitmap's table (never validated) or a table
# entry on the L1 table frees nothing that is in use (qemu-img check: no
# errors, leaks at most)
BMPY="$PY $KIMG_SRC/tests/cli/qcow2_bitmaps.py"
qemu-img create -q -f qcow2 -o cluster_size=4k bm.qcow2 4M
qemu-img bitmap --add bm.qcow2 b0
qemu-io -f qcow2 -c "write -P 0x14 0 64k" bm.qcow2 > /dev/null
bml1=$(get_be 8 bm.qcow2 40)
for d in "set-table \$f b0 0 $bml1|a table entry on the L1 table" \
         "set \$f b0 flags 3; $BMPY set-table \$f b0 0 $bml1|an in-use bitmap's entry on the L1 table" \
         "set \$f b0 table_offset $bml1|a table on the L1 table"; do
    sampled || continue
    f=h3.qcow2; cp bm.qcow2 $f; eval "$BMPY ${d%%|*}"
    kimg amend -o compat=0.10 $f
    if [ "$RC" -eq 0 ]; then
        qemu-img check $f > chk.out 2>&1
        is "$(grep -c '^ERROR' chk.out)" 0 "${d#*|}: downgraded, no errors in qemu-img check"
    else
        err_line "${d#*|}"
    fi
done
done_testing
